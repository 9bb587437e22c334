/*
 * eiperf testbed node: the management console's sign-in, against the user store database.
 *
 * Users are rows of WSO2_USER_DB's UM_USER, as Carbon's JDBC user store keeps them (the password
 * as base64 SHA-256 of password + salt, UM_SALT_VALUE); every sign-in reads them through the
 * WSO2_USER_DB pool. A sign-in (POST /carbon/admin/login_action.jsp, form fields username and
 * password) starts a session kept by the JSESSIONID cookie, as Carbon's console does; a session
 * idle for SESSION_IDLE_MS ends. A node without that datasource (a user's own layout, the
 * multi-host testbed's nodes) has no sign-in: its console pages are open, as before.
 */

import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.SecureRandom;
import java.sql.*;
import java.time.LocalDateTime;
import java.util.*;
import java.util.concurrent.ConcurrentHashMap;

final class ConsoleLogin {
    static final String L_AUTH = "org.wso2.carbon.core.services.util.CarbonAuthenticationUtil";
    static final String DATASOURCE = "WSO2_USER_DB";
    static final String ACTION = "/carbon/admin/login_action.jsp", HOME = "/carbon/admin/index.jsp", LOGIN = "/carbon/admin/login.jsp";
    static final String COOKIE = "JSESSIONID";
    static final int TENANT = -1234;
    static final long SESSION_IDLE_MS = 30 * 60_000L;
    static final int MAX_SESSIONS = 10_000; // the oldest go first beyond this
    static final String SELECT = "SELECT UM_USER_PASSWORD, UM_SALT_VALUE FROM UM_USER WHERE UM_USER_NAME = ? AND UM_TENANT_ID = ?";

    static final class Session {
        final String user;
        volatile long lastUsed = System.currentTimeMillis();
        Session(String user) { this.user = user; }
    }

    final Map<String, Session> sessions = new ConcurrentHashMap<>();
    final SecureRandom random = new SecureRandom();

    /** True when the node has a user store to sign in against. */
    boolean required() { return Datasources.current.find(DATASOURCE) != null; }

    /** The signed-in user of the request's session, or null. */
    String user(PassThroughTransport.Exchange ex) {
        String id = cookie(ex.getRequestHeaders().getFirst("Cookie"));
        Session s = id == null ? null : sessions.get(id);
        long now = System.currentTimeMillis();
        if (s == null || now - s.lastUsed > SESSION_IDLE_MS) {
            if (s != null) sessions.remove(id);
            return null;
        }
        s.lastUsed = now;
        return s.user;
    }

    static String cookie(String header) {
        if (header == null) return null;
        for (String part : header.split(";")) {
            String[] kv = part.trim().split("=", 2);
            if (kv.length == 2 && kv[0].equals(COOKIE)) return kv[1];
        }
        return null;
    }

    /** POST login_action.jsp: checks the user against UM_USER; to the console's home with a new session, or back to the form. */
    void login(PassThroughTransport.Exchange ex) {
        Map<String, String> form = form(new String(ex.getRequestBody(), StandardCharsets.UTF_8));
        String user = form.getOrDefault("username", ""), from = String.valueOf(ex.getRequestHeaders().getFirst("X-Forwarded-For"));
        String ts = LocalDateTime.now().toString();
        boolean ok;
        try {
            ok = ex.getRequestMethod().equals("POST") && check(user, form.getOrDefault("password", ""));
        } catch (SQLException e) {
            EiNode.log.error(L_AUTH, "Cannot read the user store (datasource " + DATASOURCE + "): " + String.valueOf(e.getMessage()).split("\\R", 2)[0]);
            EiNode.send(ex, 500, EiNode.HTML, EiNode.utf8("<html><body>The user store does not answer</body></html>\n"));
            return;
        }
        if (!ok) {
            EiNode.log.warn(L_AUTH, "Failed Administrator login attempt '" + user + "[" + TENANT + "]' at [" + ts + "]");
            ex.setResponseHeader("Location", LOGIN + "?loginStatus=false");
            EiNode.send(ex, 302, null, new byte[0]);
            return;
        }
        if (sessions.size() >= MAX_SESSIONS) expire();
        byte[] b = new byte[16];
        random.nextBytes(b);
        String id = String.format("%032X", new java.math.BigInteger(1, b));
        sessions.put(id, new Session(user));
        EiNode.log.info(L_AUTH, "'" + user + "@carbon.super [" + TENANT + "]' logged in at [" + ts + "] from IP address " + from);
        ex.setResponseHeader("Set-Cookie", COOKIE + "=" + id + "; Path=/carbon; Secure; HttpOnly");
        ex.setResponseHeader("Location", HOME);
        EiNode.send(ex, 302, null, new byte[0]);
    }

    /** Drops idle sessions, then the oldest half if still full. */
    void expire() {
        long now = System.currentTimeMillis();
        sessions.values().removeIf(s -> now - s.lastUsed > SESSION_IDLE_MS);
        if (sessions.size() >= MAX_SESSIONS) {
            List<Map.Entry<String, Session>> all = new ArrayList<>(sessions.entrySet());
            all.sort(Comparator.comparingLong(e -> e.getValue().lastUsed));
            for (Map.Entry<String, Session> e : all.subList(0, all.size() / 2)) sessions.remove(e.getKey());
        }
    }

    /** The user's stored hash matches base64(SHA-256(password + salt)). */
    static boolean check(String user, String password) throws SQLException {
        Datasources.Pool p = Datasources.current.find(DATASOURCE);
        if (p == null || user.isEmpty()) return false;
        try (Connection c = p.ds.getConnection(); PreparedStatement s = c.prepareStatement(SELECT)) {
            s.setString(1, user);
            s.setInt(2, TENANT);
            try (ResultSet r = s.executeQuery()) {
                if (!r.next()) return false;
                String stored = r.getString(1), salt = r.getString(2);
                byte[] digest = MessageDigest.getInstance("SHA-256").digest((password + (salt == null ? "" : salt)).getBytes(StandardCharsets.UTF_8));
                return MessageDigest.isEqual(Base64.getEncoder().encode(digest), String.valueOf(stored).getBytes(StandardCharsets.UTF_8));
            }
        } catch (java.security.NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    static Map<String, String> form(String body) {
        Map<String, String> out = new HashMap<>();
        for (String pair : body.split("&")) {
            String[] kv = pair.split("=", 2);
            try {
                if (kv.length == 2) out.put(URLDecoder.decode(kv[0], StandardCharsets.UTF_8), URLDecoder.decode(kv[1], StandardCharsets.UTF_8));
            } catch (IllegalArgumentException ignored) { /* a malformed field is no field */ }
        }
        return out;
    }

    /** The sign-in form Carbon's console shows to a visitor without a session. */
    static String formHtml() {
        return "<h2>Sign-in</h2><form id=\"login\" method=\"post\" action=\"" + ACTION + "\">"
                + "<label>Username <input name=\"username\"></label> <label>Password <input name=\"password\" type=\"password\"></label>"
                + " <input type=\"submit\" value=\"Sign-in\"></form>";
    }
}
