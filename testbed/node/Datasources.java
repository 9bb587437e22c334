/*
 * eiperf testbed node: its datasources, as Carbon opens them at start.
 *
 * Each <datasource> of conf/datasources/master-datasources.xml becomes a real Tomcat JDBC pool
 * (org.apache.tomcat.jdbc.pool.DataSource, the pool Carbon's RDBMS datasources use): every
 * element of its <configuration> is handed to Tomcat's own parser as the pool property of that
 * name (url, username, password, driverClassName, maxActive, maxWait, minIdle, testOnBorrow,
 * validationQuery, validationInterval, defaultAutoCommit, ...), so each setting means exactly
 * what it means in the product. The pools open in parallel, on a thread of their own beside the
 * rest of the start-up. conf/registry.xml's local registry and mounts are then checked against
 * them: the datasource each names must answer and hold the mounted paths (REG_PATH, as the
 * registry schema keeps them); when the shared registry does not answer, the node refuses to
 * start with one ERROR line naming the datasource and its URL. Each pool's own MBean
 * (org.apache.tomcat.jdbc.pool.jmx.ConnectionPool: Active, Idle, WaitCount, BorrowedCount, ...)
 * is registered as tomcat.jdbc:type=ConnectionPool,name=<datasource>.
 *
 * Lookup is the DBLookup mediator: one parameterised statement per message through a pool.
 * A node without master-datasources.xml (a user's own layout) has no datasources and starts.
 */

import java.lang.management.ManagementFactory;
import java.nio.file.*;
import java.sql.*;
import java.util.*;
import java.util.concurrent.*;
import java.util.concurrent.atomic.AtomicLong;
import java.util.regex.Pattern;
import javax.management.*;
import org.apache.tomcat.jdbc.pool.DataSource;
import org.apache.tomcat.jdbc.pool.DataSourceFactory;
import org.apache.tomcat.jdbc.pool.PoolConfiguration;
import org.w3c.dom.Element;

final class Datasources {
    static final String L_DS = "org.wso2.carbon.ndatasource.core.DataSourceRepository";
    static final String L_REG = "org.wso2.carbon.registry.core.internal.RegistryCoreServiceComponent";
    static final String L_DBLOOKUP = "org.apache.synapse.mediators.db.DBLookupMediator";
    static final String FILE = "conf/datasources/master-datasources.xml", REGISTRY = "conf/registry.xml";
    static final String JMX_DOMAIN = "tomcat.jdbc";
    static final int TENANT = -1234; // carbon.super, the tenant of every registry path here
    /** How long a connection attempt may take unless the configuration says (the driver's own default is 30 s). */
    static final String CONNECT_TIMEOUT = "connectTimeout=5000";
    static final Pattern SECRET_IN_URL = Pattern.compile("(?i)(password=)[^&;]*");
    // Tomcat logs through java.util.logging to stderr (stdout.log): the node writes its own lines
    // instead. Held here: java.util.logging keeps only a weak reference to a configured logger.
    static final java.util.logging.Logger POOL_LOG = java.util.logging.Logger.getLogger("org.apache.tomcat.jdbc.pool");

    /** The datasources the node runs with (none until they are open). */
    static volatile Datasources current = new Datasources(List.of());

    /** One open pool. */
    static final class Pool {
        final String name, jndi, url;
        final DataSource ds;
        ObjectName mbean;

        Pool(String name, String jndi, String url, DataSource ds) {
            this.name = name;
            this.jndi = jndi;
            this.url = url;
            this.ds = ds;
        }
    }

    /** One <datasource> as declared, before its pool opens. */
    static final class Declared {
        final String name, jndi;
        final Properties props;

        Declared(String name, String jndi, Properties props) {
            this.name = name;
            this.jndi = jndi;
            this.props = props;
        }

        String url() { return redact(props.getProperty("url", "")); }
    }

    final List<Pool> pools;

    Datasources(List<Pool> pools) { this.pools = pools; }

    /** A datasource by its name or its JNDI name; null when none is declared. */
    Pool find(String nameOrJndi) {
        for (Pool p : pools) if (p.name.equals(nameOrJndi) || nameOrJndi.equals(p.jndi)) return p;
        return null;
    }

    static String redact(String url) { return SECRET_IN_URL.matcher(url).replaceAll("$1***"); }

    /** Opens the datasources on a thread of its own; `await` gives them (or the start-up error). */
    static Future<Datasources> openAsync(Path home) {
        FutureTask<Datasources> task = new FutureTask<>(() -> open(home));
        Thread t = new Thread(task, "DataSource-init");
        t.setDaemon(true);
        t.start();
        return task;
    }

    static Datasources await(Future<Datasources> f) throws Exception {
        try {
            return current = f.get();
        } catch (ExecutionException e) {
            throw e.getCause() instanceof Exception ? (Exception) e.getCause() : e;
        }
    }

    /** Reads master-datasources.xml, opens every pool, checks registry.xml's registries against them. */
    static Datasources open(Path home) throws EiNode.StartupError {
        Path file = home.resolve(FILE);
        if (!Files.exists(file)) {
            EiNode.log.info(L_DS, "No datasources configured (" + FILE + " is absent)");
            return new Datasources(List.of());
        }
        List<Declared> declared = declare(file);
        POOL_LOG.setLevel(java.util.logging.Level.OFF);
        Map<String, Future<Pool>> opening = new LinkedHashMap<>();
        ExecutorService threads = Executors.newFixedThreadPool(Math.max(1, declared.size()), EiNode.named("DataSource-init-"));
        for (Declared d : declared) opening.put(d.name, threads.submit(() -> openPool(d)));
        threads.shutdown();
        List<Pool> pools = new ArrayList<>();
        Map<String, String> failed = new LinkedHashMap<>(); // name -> why
        for (Declared d : declared) {
            try {
                pools.add(opening.get(d.name).get());
            } catch (ExecutionException | InterruptedException e) {
                Throwable c = e instanceof ExecutionException ? e.getCause() : e;
                failed.put(d.name, c.getMessage() != null ? c.getMessage().split("\\R", 2)[0] : c.toString());
            }
        }
        Datasources out = new Datasources(pools);
        out.checkRegistry(home.resolve(REGISTRY), declared, failed); // first: its error is the one line
        for (Map.Entry<String, String> f : failed.entrySet()) {
            Declared d = declared.stream().filter(x -> x.name.equals(f.getKey())).findFirst().get();
            EiNode.log.error(L_DS, "Error in creating the datasource " + d.name + " (" + d.url() + "): " + f.getValue());
        }
        for (Pool p : pools) out.register(p);
        EiNode.log.info(L_DS, pools.size() + " datasource(s) open: " + String.join(", ", pools.stream().map(p -> p.name).toArray(String[]::new)));
        return out;
    }

    /** Every <datasource> of the file: its name, JNDI name and its configuration as pool properties. */
    static List<Declared> declare(Path file) throws EiNode.StartupError {
        Element root = EiNode.readXml(file, L_DS);
        List<Declared> out = new ArrayList<>();
        for (Element ds : EiNode.children(EiNode.child(root, "datasources"), "datasource")) {
            String name = EiNode.text(EiNode.child(ds, "name"), "");
            Element def = EiNode.child(ds, "definition");
            if (name.isEmpty()) throw new EiNode.StartupError(L_DS, "A datasource in " + file + " has no <name>");
            if (def == null || !"RDBMS".equalsIgnoreCase(def.getAttribute("type").trim())) {
                EiNode.log.warn(L_DS, "Datasource " + name + " in " + file + " is not of type RDBMS: not opened");
                continue;
            }
            Properties props = new Properties();
            for (Element e : EiNode.children(EiNode.child(def, "configuration"), null)) {
                if (EiNode.children(e, null).isEmpty()) props.setProperty(EiNode.localName(e), e.getTextContent().trim());
            }
            if (props.getProperty("url", "").isEmpty()) throw new EiNode.StartupError(L_DS, "Datasource " + name + " in " + file + " has no <url>");
            props.putIfAbsent("connectionProperties", CONNECT_TIMEOUT);
            props.setProperty("name", name);
            props.setProperty("jmxEnabled", "true");
            String jndi = EiNode.text(EiNode.child(EiNode.child(ds, "jndiConfig"), "name"), null);
            out.add(new Declared(name, jndi, props));
        }
        return out;
    }

    /**
     * A Tomcat pool from the declared properties, with its initialSize connections made (or the
     * error). Tomcat makes them one after the other; here the pool makes the first (which fails
     * fast when the database does not answer) and the rest are made at once, then returned idle.
     */
    static Pool openPool(Declared d) throws SQLException {
        PoolConfiguration conf = DataSourceFactory.parsePoolProperties(d.props);
        int initial = Math.min(conf.getInitialSize(), Math.min(conf.getMaxActive(), conf.getMaxIdle()));
        conf.setInitialSize(Math.min(1, initial));
        DataSource ds = new DataSource(conf);
        try {
            ds.createPool();
            fill(ds, initial);
        } catch (SQLException | RuntimeException e) {
            ds.close(true);
            throw e;
        }
        return new Pool(d.name, d.jndi, d.url(), ds);
    }

    /** Borrows `size` connections at once (making those the pool lacks) and returns them idle. */
    static void fill(DataSource ds, int size) throws SQLException {
        if (size <= 1) return;
        ExecutorService threads = Executors.newFixedThreadPool(size - 1, EiNode.named("DataSource-fill-"));
        List<Future<Connection>> made = new ArrayList<>();
        try {
            for (int i = 1; i < size; i++) made.add(threads.submit(() -> ds.getConnection()));
            Connection first = ds.getConnection(); // the one the pool made
            SQLException failed = null;
            List<Connection> all = new ArrayList<>(List.of(first));
            for (Future<Connection> f : made) {
                try {
                    all.add(f.get());
                } catch (ExecutionException | InterruptedException e) {
                    Throwable c = e instanceof ExecutionException ? e.getCause() : e;
                    failed = c instanceof SQLException ? (SQLException) c : new SQLException(c.getMessage(), c);
                }
            }
            for (Connection c : all) c.close(); // back to the pool, idle
            if (failed != null) throw failed;
        } finally {
            threads.shutdown();
        }
    }

    /** The pool's MBean as tomcat.jdbc:type=ConnectionPool,name=<datasource>. */
    void register(Pool p) {
        try {
            String n = p.name.matches("[A-Za-z0-9_.-]+") ? p.name : ObjectName.quote(p.name);
            ObjectName on = new ObjectName(JMX_DOMAIN + ":type=ConnectionPool,name=" + n);
            ManagementFactory.getPlatformMBeanServer().registerMBean(p.ds.getPool().getJmxPool(), on);
            p.mbean = on;
        } catch (JMException | RuntimeException e) {
            EiNode.log.warn(L_DS, "Cannot register the MBean of datasource " + p.name + ": " + e);
        }
    }

    /** Closes every pool and unregisters its MBean (at shutdown). */
    void close() {
        for (Pool p : pools) {
            if (p.mbean != null) {
                try {
                    ManagementFactory.getPlatformMBeanServer().unregisterMBean(p.mbean);
                } catch (JMException ignored) { /* gone already */ }
            }
            p.ds.close(true);
        }
    }

    // ------------------------------------------------------------------ registry

    /**
     * every mount's remote instance and registry.xml's local registry (currentDBConfig) must name a
     * datasource that opened; each mount's target path must be in that database's REG_PATH (made
     * there when missing, as Carbon makes a mount's collection). Any failure stops the node.
     */
    void checkRegistry(Path file, List<Declared> declared, Map<String, String> failed) throws EiNode.StartupError {
        if (!Files.exists(file)) return;
        Element root = EiNode.readXml(file, L_REG);
        Map<String, String> dbConfigs = new HashMap<>(); // dbConfig name -> datasource JNDI name
        for (Element c : EiNode.children(root, "dbConfig")) dbConfigs.put(c.getAttribute("name").trim(), EiNode.text(EiNode.child(c, "dataSource"), ""));
        Map<String, String> instances = new HashMap<>(); // remoteInstance id -> dbConfig name
        for (Element r : EiNode.children(root, "remoteInstance")) instances.put(EiNode.text(EiNode.child(r, "id"), ""), EiNode.text(EiNode.child(r, "dbConfig"), ""));
        for (Element m : EiNode.children(root, "mount")) {
            String path = m.getAttribute("path").trim(), instance = EiNode.text(EiNode.child(m, "instanceId"), "");
            String target = EiNode.text(EiNode.child(m, "targetPath"), path);
            String dbConfig = instances.get(instance);
            if (dbConfig == null) throw new EiNode.StartupError(L_REG, "The mount " + path + " in " + file + " names the remote instance '" + instance + "', which is not defined there");
            Pool p = registryPool("the shared registry", dbConfig, dbConfigs, declared, failed, file);
            long id = mountedPathId(p, target);
            EiNode.log.info(L_REG, "Mounted " + path + " from " + target + " of the shared registry (instance " + instance + ", datasource "
                    + p.name + ", " + p.url + ", path id " + id + ")");
        }
        String local = EiNode.text(EiNode.child(root, "currentDBConfig"), "");
        if (!local.isEmpty()) {
            Pool p = registryPool("the local registry", local, dbConfigs, declared, failed, file);
            EiNode.log.info(L_REG, "Local registry: dbConfig " + local + ", datasource " + p.name + " (" + p.url + ")");
        }
    }

    /** The open pool behind a dbConfig, or the start-up error that says why there is none. */
    Pool registryPool(String what, String dbConfig, Map<String, String> dbConfigs, List<Declared> declared,
                      Map<String, String> failed, Path file) throws EiNode.StartupError {
        String jndi = dbConfigs.get(dbConfig);
        if (jndi == null) throw new EiNode.StartupError(L_REG, "The dbConfig '" + dbConfig + "' of " + what + " is not defined in " + file);
        Pool p = find(jndi);
        if (p != null) return p;
        for (Declared d : declared) {
            if (d.name.equals(jndi) || jndi.equals(d.jndi)) {
                throw new EiNode.StartupError(L_REG, "Cannot connect to the database of " + what + ": datasource " + d.name + " ("
                        + d.url() + "): " + failed.getOrDefault(d.name, "not opened"));
            }
        }
        throw new EiNode.StartupError(L_REG, "The dbConfig '" + dbConfig + "' of " + what + " names the datasource " + jndi
                + ", which " + FILE + " does not declare");
    }

    /** REG_PATH_ID of `path` in the pool's registry database (inserted when missing). */
    static long mountedPathId(Pool p, String path) throws EiNode.StartupError {
        String select = "SELECT REG_PATH_ID FROM REG_PATH WHERE REG_PATH_VALUE = ? AND REG_TENANT_ID = ?";
        try (Connection c = p.ds.getConnection()) {
            for (int attempt = 0; attempt < 2; attempt++) {
                try (PreparedStatement s = c.prepareStatement(select)) {
                    s.setString(1, path);
                    s.setInt(2, TENANT);
                    try (ResultSet r = s.executeQuery()) {
                        if (r.next()) {
                            long id = r.getLong(1);
                            if (!c.getAutoCommit()) c.commit();
                            return id;
                        }
                    }
                }
                try (PreparedStatement s = c.prepareStatement("INSERT IGNORE INTO REG_PATH (REG_PATH_VALUE, REG_TENANT_ID) VALUES (?, ?)")) {
                    s.setString(1, path);
                    s.setInt(2, TENANT);
                    s.executeUpdate();
                }
                if (!c.getAutoCommit()) c.commit();
            }
            throw new SQLException("the path is neither there nor insertable");
        } catch (SQLException e) {
            throw new EiNode.StartupError(L_REG, "Cannot mount " + path + " from the shared registry: datasource " + p.name + " (" + p.url + "): "
                    + String.valueOf(e.getMessage()).split("\\R", 2)[0]);
        }
    }

    // ------------------------------------------------------------------ DBLookup mediator

    /**
     * <dblookup>: <connection><pool><dsName> (a datasource's name or JNDI name), one <statement> with
     * its <sql>, <parameter value=".." type=".."/> (literal values; expressions are not evaluated)
     * and <result name column/>. Each message borrows a connection (waiting up to maxWait), runs
     * the statement and gives it back, as Synapse's DBLookupMediator does with a datasource pool.
     */
    static final class Lookup {
        static final AtomicLong lastWarn = new AtomicLong();
        final String dsName, sql;
        final List<String[]> params = new ArrayList<>(); // {type, value}
        final List<String> results = new ArrayList<>();  // column names read

        Lookup(String dsName, String sql) { this.dsName = dsName; this.sql = sql; }

        static Lookup parse(Element e) {
            String ds = EiNode.text(EiNode.child(EiNode.child(EiNode.child(e, "connection"), "pool"), "dsName"), "");
            if (ds.isEmpty()) throw new IllegalArgumentException("<dblookup> needs <connection><pool><dsName> (the testbed has datasources only)");
            List<Element> statements = EiNode.children(e, "statement");
            if (statements.size() != 1) throw new IllegalArgumentException("<dblookup> needs exactly one <statement> in the testbed");
            Element st = statements.get(0);
            String sql = EiNode.text(EiNode.child(st, "sql"), "");
            if (sql.isEmpty()) throw new IllegalArgumentException("<dblookup><statement> has no <sql>");
            Lookup l = new Lookup(ds, sql);
            for (Element p : EiNode.children(st, "parameter")) {
                if (!p.hasAttribute("value")) throw new IllegalArgumentException("<dblookup> parameter needs a value attribute (expressions are not evaluated by the testbed)");
                l.params.add(new String[] {p.getAttribute("type").trim().toUpperCase(Locale.ROOT), p.getAttribute("value")});
            }
            for (Element r : EiNode.children(st, "result")) l.results.add(r.getAttribute("column").trim());
            return l;
        }

        /** Runs the lookup; null when it ran, else why not (the message gets a fault, one ERROR a second is logged). */
        String run() {
            Pool p = current.find(dsName);
            String why;
            if (p == null) {
                why = "Cannot find a datasource named " + dsName;
            } else {
                try (Connection c = p.ds.getConnection(); PreparedStatement s = c.prepareStatement(sql)) {
                    for (int i = 0; i < params.size(); i++) {
                        String type = params.get(i)[0], v = params.get(i)[1];
                        if (type.equals("INTEGER") || type.equals("INT")) s.setInt(i + 1, Integer.parseInt(v.trim()));
                        else if (type.equals("DOUBLE")) s.setDouble(i + 1, Double.parseDouble(v.trim()));
                        else s.setString(i + 1, v);
                    }
                    try (ResultSet r = s.executeQuery()) {
                        if (r.next()) for (String col : results) r.getString(col);
                    }
                    return null;
                } catch (SQLException | RuntimeException e) {
                    why = "Error executing statement : " + sql + " against DataSource : " + dsName + ": "
                            + String.valueOf(e.getMessage()).split("\\R", 2)[0];
                }
            }
            long now = System.currentTimeMillis(), last = lastWarn.get();
            if (now - last > 1000 && lastWarn.compareAndSet(last, now)) EiNode.log.error(L_DBLOOKUP, why);
            return why;
        }
    }
}
