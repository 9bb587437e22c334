/*
 * eiperf testbed node: a miniature WSO2 Enterprise Integrator (integration profile) node.
 *
 * Started only through its EI_HOME's bin/integrator.sh, so the JVM flags written there take
 * effect (heap, GC). It reads the node's files the way Carbon does:
 *   conf/carbon.xml                  port offset (-DportOffset wins), JMX ports, PKCS12 keystore
 *   conf/axis2/axis2.xml             clustering: wka members, domain, local member host/port
 *                                    (conf/axis2.xml is read when the former is absent)
 *   conf/passthru-http.properties    worker pool of the pass-through transport
 *   repository/deployment/server/synapse-configs/default/proxy-services/*.xml   (hot deployed)
 *   conf/datasources/master-datasources.xml, conf/registry.xml   JDBC pools, registry mounts
 *                                    (Datasources.java; the console's sign-in: ConsoleLogin.java)
 * and serves, on 127.0.0.1 (-Deiperf.listen.host to change):
 *   8280+o  pass-through HTTP, 8243+o pass-through HTTPS: /services/<Proxy> (log + respond)
 *   9443+o  management console (HTTPS): /carbon/
 *   localMemberPort (not offset): membership, line protocol "HELLO <domain> <uuid> <host> <port>"
 * It writes Carbon-style lines to repository/logs/wso2carbon.log and its pid to wso2carbon.pid.
 * HTTP/HTTPS are served by PassThroughTransport.java (no jdk.httpserver: the JDK 11 runtime has
 * none), remote JMX by JmxConnector.java (RMIRegistryPort+o, RMIServerPort+o). JDK 11 standard
 * library (compiled with --release 11), no package; the datasources use the jars in lib/ (Tomcat
 * JDBC pool, its juli logging, the MariaDB driver). See README.md.
 */

import java.io.*;
import java.lang.management.*;
import java.net.*;
import java.nio.file.*;
import java.nio.file.attribute.BasicFileAttributes;
import java.security.KeyStore;
import java.time.LocalDateTime;
import java.time.format.DateTimeFormatter;
import java.util.*;
import java.util.concurrent.*;
import java.util.concurrent.atomic.*;
import java.util.regex.*;
import javax.net.ssl.*;
import javax.xml.XMLConstants;
import javax.xml.parsers.*;
import org.w3c.dom.*;
import org.xml.sax.*;

import static java.nio.charset.StandardCharsets.UTF_8;

public final class EiNode {
    // Logger names as a real EI 6.x node writes them, so log parsers see familiar categories.
    static final String L_CORE = "org.wso2.carbon.core.internal.CarbonCoreActivator";
    static final String L_FINALIZER = "org.wso2.carbon.core.internal.StartupFinalizerServiceComponent";
    static final String L_SERVER_MGR = "org.wso2.carbon.core.init.CarbonServerManager";
    static final String L_LISTENER = "org.apache.synapse.transport.passthru.core.PassThroughListeningIOReactorManager";
    static final String L_PT_CONFIG = "org.apache.synapse.transport.passthru.config.PassThroughConfiguration";
    static final String L_RELAY = "org.apache.synapse.transport.passthru.util.RelayUtils";
    static final String L_DEPLOYER = "org.apache.synapse.deployers.ProxyServiceDeployer";
    static final String L_LOG_MEDIATOR = "org.apache.synapse.mediators.builtin.LogMediator";
    static final String L_CLUSTER = "org.wso2.carbon.core.clustering.hazelcast.HazelcastClusteringAgent";
    static final String L_WKA = "org.wso2.carbon.core.clustering.hazelcast.wka.WKABasedMembershipScheme";
    static final String L_JMX = "org.wso2.carbon.core.init.JMXServerManager";
    static final String XML = "text/xml; charset=UTF-8", TEXT = "text/plain; charset=UTF-8", HTML = "text/html; charset=UTF-8";
    static final String PROXY_DIR = "repository/deployment/server/synapse-configs/default/proxy-services";
    static Log log;

    final Path home;
    final String nodeName;
    final String listenHost = System.getProperty("eiperf.listen.host", "127.0.0.1");
    volatile Map<String, Proxy> proxies = Map.of(); // immutable, replaced whole on every (re)deploy
    final List<PassThroughTransport.Listener> servers = new ArrayList<>();
    final List<PassThroughTransport.Counters> counters = new ArrayList<>();
    PassThroughTransport.IoSettings io; // io_threads_per_reactor, io_buffer_size, http.socket.timeout
    final List<ExecutorService> pools = new ArrayList<>();
    Membership membership;
    JmxConnector jmx;
    Datasources datasources;
    final ConsoleLogin consoleLogin = new ConsoleLogin(); // the console's sign-in and sessions
    volatile boolean stopping;

    EiNode(Path home) {
        this.home = home;
        String n = System.getProperty("eiperf.node.name");
        this.nodeName = n != null && !n.isBlank() ? n : String.valueOf(home.getFileName());
    }

    public static void main(String[] args) {
        Path home = Paths.get(System.getProperty("carbon.home", ".")).toAbsolutePath().normalize();
        try {
            log = new Log(home.resolve("repository/logs/wso2carbon.log"));
        } catch (IOException e) {
            System.err.println("ERROR: cannot open the log file under " + home + ": " + e);
            System.exit(1);
        }
        try {
            new EiNode(home).start();
        } catch (StartupError e) {
            fail(e.logger, e.getMessage());
        } catch (Exception e) {
            fail(L_CORE, "WSO2 Carbon failed to start: " + e);
        }
    }

    /** One ERROR line (log and stderr), then exit 1 without the shutdown hook. */
    static void fail(String logger, String msg) {
        log.write("ERROR", logger, msg, true);
        System.err.println("ERROR: " + msg);
        log.info(L_SERVER_MGR, "Halting JVM"); // what node_control reads as "stopped before it started"
        log.close();
        Runtime.getRuntime().halt(1); // never 121: integrator.sh restarts the JVM on 121
    }

    @SuppressWarnings("serial")
    static final class StartupError extends Exception {
        final String logger;
        StartupError(String logger, String msg) { super(msg); this.logger = logger; }
    }

    // ------------------------------------------------------------------ start-up and shutdown

    void start() throws Exception {
        writePidFile();
        Files.createDirectories(home.resolve("tmp")); // integrator.sh points java.io.tmpdir here
        // The TLS set-up is the slowest step of the start (PBKDF2 of the keystore, the JSSE classes):
        // it runs on its own thread, from here while the settings are read, until the HTTPS ports bind.
        ExecutorService tlsInit = Executors.newSingleThreadExecutor(named("TLS-init-"));
        tlsInit.execute(EiNode::warmTls);
        // The JMX connector (RMI, the platform MBean server) likewise, on a thread of its own.
        ExecutorService jmxInit = Executors.newSingleThreadExecutor(named("JMX-init-"));
        jmxInit.execute(ManagementFactory::getPlatformMBeanServer);
        Future<Datasources> dsInit = Datasources.openAsync(home); // JDBC pools and registry mounts, also beside the rest
        log.info(L_CORE, "Starting WSO2 Carbon...");
        log.info(L_CORE, "Node name : " + nodeName);
        log.info(L_CORE, "Carbon Home : " + home);
        log.info(L_CORE, "Java Version : " + System.getProperty("java.version") + ", Java VM : " + System.getProperty("java.vm.name"));
        log.info(L_CORE, "Max heap: " + Runtime.getRuntime().maxMemory() / (1024 * 1024) + " MB");
        List<String> gcs = new ArrayList<>();
        for (GarbageCollectorMXBean gc : ManagementFactory.getGarbageCollectorMXBeans()) gcs.add(gc.getName());
        log.info(L_CORE, "Garbage collectors : " + String.join(", ", gcs));
        log.info(L_CORE, "JVM arguments : " + String.join(" ", ManagementFactory.getRuntimeMXBean().getInputArguments()));
        Element carbon = readXml(home.resolve("conf/carbon.xml"), L_CORE);
        String offsetText = System.getProperty("portOffset", text(child(child(carbon, "Ports"), "Offset"), "0"));
        int offset;
        try {
            offset = Integer.parseInt(offsetText.trim());
        } catch (NumberFormatException e) {
            throw new StartupError(L_CORE, "Invalid port offset '" + offsetText + "' (carbon.xml <Ports><Offset> or -DportOffset)");
        }
        Element keyStore = child(child(carbon, "Security"), "KeyStore");
        Future<SSLContext> sslInit = tlsInit.submit(() -> sslContext(keyStore));
        tlsInit.shutdown();
        Element jmxPorts = child(child(carbon, "Ports"), "JMX");
        int jmxOffset = offset;
        Future<JmxConnector> jmxStart = jmxInit.submit(() -> startJmx(jmxPorts, jmxOffset));
        jmxInit.shutdown();
        ThreadPoolExecutor workers = workerPool(home.resolve("conf/passthru-http.properties"));

        // Bind everything first: a taken port must stop the node before it claims to be up.
        // One worker pool behind both pass-through listeners, as in Synapse; the console has its own.
        int http = 8280 + offset, https = 8243 + offset, mgt = 9443 + offset;
        ThreadPoolExecutor consolePool = new ThreadPoolExecutor(4, 4, 60, TimeUnit.SECONDS, new LinkedBlockingQueue<>(),
                named("http-nio-" + mgt + "-exec-"));
        pools.addAll(List.of(workers, consolePool));
        PassThroughTransport.Listener httpL = bind("Pass-through HTTP Listener", "HTTP-Listener", http, null, workers,
                ex -> passThrough(ex, "http", http), "http");
        membership = Membership.configure(home);
        Deployer deployer = new Deployer(home.resolve(PROXY_DIR));
        deployer.scan();
        SSLContext ssl = await(sslInit);
        datasources = Datasources.await(dsInit); // the shared registry must answer before the node serves
        PassThroughTransport.Listener httpsL = bind("Pass-through HTTPS Listener", "HTTPS-Listener", https, ssl, workers,
                ex -> passThrough(ex, "https", https), "https");
        PassThroughTransport.Listener console = bind("Management Console", "http-nio-" + mgt, mgt, ssl, consolePool,
                this::console, null);

        jmx = await(jmxStart); // JMX clients never see a started node without its connector
        Runtime.getRuntime().addShutdownHook(new Thread(this::shutdown, "Shutdown Hook"));
        if (membership != null) membership.start();
        for (PassThroughTransport.Counters c : counters) {
            try {
                c.register(c == httpL.counters ? "http" : "https");
            } catch (javax.management.JMException e) {
                log.warn(L_LISTENER, "Cannot register the pass-through MBeans: " + e);
            }
        }
        httpL.start();
        log.info(L_LISTENER, "Pass-through HTTP Listener started on " + listenHost + ":" + http);
        httpsL.start();
        log.info(L_LISTENER, "Pass-through HTTPS Listener started on " + listenHost + ":" + https);
        console.start();
        log.info(L_FINALIZER, "Mgt Console URL  : https://" + listenHost + ":" + mgt + "/carbon/");
        log.info(L_JMX, "JMX Service URL  : " + jmx.serviceUrl);

        ScheduledExecutorService poller = Executors.newSingleThreadScheduledExecutor(named("CarbonDeploymentSchedulerThread-"));
        poller.scheduleWithFixedDelay(deployer::scanSafely, 500, 500, TimeUnit.MILLISECONDS);
        pools.add(poller);
        // "%.1f" by hand: String.format would load java.util.Formatter and the locale data (~15 ms) first
        long tenths = (ManagementFactory.getRuntimeMXBean().getUptime() + 50) / 100;
        log.info(L_FINALIZER, "WSO2 Carbon started in " + tenths / 10 + "." + tenths % 10 + " sec");
    }

    /**
     * Bind a listener to listenHost:port, or stop the node with one line naming the port.
     * `scheme` names its MBeans (null: none, the console's).
     */
    PassThroughTransport.Listener bind(String what, String threads, int port, SSLContext ssl, ThreadPoolExecutor pool,
                                       PassThroughTransport.Handler handler, String scheme) throws StartupError {
        PassThroughTransport.Counters c = new PassThroughTransport.Counters(pool);
        try {
            PassThroughTransport.Listener l = new PassThroughTransport.Listener(threads, new InetSocketAddress(listenHost, port), ssl,
                    io, pool, handler, c, this::warnRejected);
            servers.add(l);
            if (scheme != null) counters.add(c);
            return l;
        } catch (IOException e) {
            throw new StartupError(L_LISTENER, "Cannot start " + what + ": port " + port + " on " + listenHost
                    + " is not available (" + e.getMessage() + ")");
        }
    }

    static final long DRAIN_LIMIT_MS = 2000;

    /**
     * Stop accepting on every listener, then wait (bounded) until no accepted connection holds an
     * unanswered request. Closing the listeners at once would cut requests nginx already sent, and
     * nginx does not resend a POST: the client would see a 502 during a rolling restart.
     */
    void drainListeners(long limitMs) {
        for (PassThroughTransport.Listener s : servers) s.stopAccepting();
        long end = System.nanoTime() + limitMs * 1_000_000L;
        while (System.nanoTime() < end && !servers.stream().allMatch(PassThroughTransport.Listener::quiet)) {
            try { Thread.sleep(2); } catch (InterruptedException e) { return; }
        }
    }

    void shutdown() {
        stopping = true;
        log.info(L_SERVER_MGR, "Shutdown hook triggered....");
        log.info(L_SERVER_MGR, "Stopping WSO2 Carbon...");
        if (membership != null) membership.close(); // first, so the peers see this node leave at once
        drainListeners(DRAIN_LIMIT_MS);             // a rolling restart loses no request
        for (PassThroughTransport.Listener s : servers) s.close();
        for (PassThroughTransport.Counters c : counters) c.unregister();
        log.info(L_LISTENER, "Pass-through HTTP and HTTPS Listeners stopped");
        for (ExecutorService p : pools) p.shutdownNow();
        if (jmx != null) jmx.close();
        if (datasources != null) datasources.close();
        log.info(L_SERVER_MGR, "Halting JVM");
        log.close();
    }

    void writePidFile() throws IOException {
        String pid = String.valueOf(ProcessHandle.current().pid());
        Path tmp = home.resolve(".wso2carbon.pid." + pid + ".tmp");
        Files.writeString(tmp, pid); // the bare number, as Carbon writes it
        Files.move(tmp, home.resolve("wso2carbon.pid"), StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    }

    /**
     * The remote JMX connector on carbon.xml's <Ports><JMX> ports plus the offset, bound to the listen
     * host, as Carbon's JMXServerManager starts it. -Deiperf.jmx.password.file (and .access.file),
     * which integrator.sh passes when the testbed's JMX has a password, ask each client for a user.
     */
    JmxConnector startJmx(Element ports, int offset) throws StartupError {
        int registry = jmxPort(child(ports, "RMIRegistryPort"), 9999) + offset, server = jmxPort(child(ports, "RMIServerPort"), 11111) + offset;
        String password = System.getProperty("eiperf.jmx.password.file"), access = System.getProperty("eiperf.jmx.access.file");
        try {
            return JmxConnector.start(listenHost, registry, server, password == null ? null : Paths.get(password),
                    access == null ? null : Paths.get(access));
        } catch (IOException e) {
            throw new StartupError(L_JMX, "Cannot start the JMX connector: " + e.getMessage());
        }
    }

    static int jmxPort(Element e, int dflt) throws StartupError {
        String v = text(e, String.valueOf(dflt));
        try {
            return Integer.parseInt(v);
        } catch (NumberFormatException x) {
            throw new StartupError(L_JMX, "Invalid JMX port '" + v + "' in carbon.xml <Ports><JMX>");
        }
    }

    /** Loads the JSSE and PKCS12 providers' classes ahead of sslContext (a failure shows there). */
    static void warmTls() {
        try {
            KeyStore.getInstance("PKCS12");
            KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
            SSLContext.getInstance("TLS");
        } catch (Exception ignored) { /* sslContext reports it */ }
    }

    /** What a start-up thread built (the SSLContext, the JMX connector), its StartupError as is. */
    static <T> T await(Future<T> f) throws Exception {
        try {
            return f.get();
        } catch (ExecutionException e) {
            throw e.getCause() instanceof Exception ? (Exception) e.getCause() : e;
        }
    }

    /**
     * The TLS context of all HTTPS listeners (built once, shared), from carbon.xml's <Security><KeyStore>.
     * No trust managers: the listeners never ask for client certificates, so the JDK's CA list
     * (cacerts, slow to load) would go unused; with none, were client authentication ever asked
     * for, every client certificate would be refused (fails closed).
     */
    SSLContext sslContext(Element ks) throws StartupError {
        String path = text(child(ks, "Location"), "${carbon.home}/repository/resources/security/wso2carbon.p12")
                .replace("${carbon.home}", System.getProperty("carbon.home", home.toString()));
        String password = text(child(ks, "Password"), "wso2carbon"), alias = text(child(ks, "KeyAlias"), "wso2carbon");
        try (InputStream in = Files.newInputStream(Paths.get(path))) {
            KeyStore store = KeyStore.getInstance(text(child(ks, "Type"), "PKCS12"));
            store.load(in, password.toCharArray());
            if (!store.isKeyEntry(alias)) log.warn(L_CORE, "Keystore " + path + " has no private key '" + alias + "': using the keys it has");
            KeyManagerFactory kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
            kmf.init(store, text(child(ks, "KeyPassword"), password).toCharArray());
            SSLContext ctx = SSLContext.getInstance("TLS");
            ctx.init(kmf.getKeyManagers(), new TrustManager[0], null);
            return ctx;
        } catch (Exception e) {
            throw new StartupError(L_CORE, "Cannot load the keystore " + path + " (carbon.xml <Security><KeyStore>): " + e);
        }
    }

    /** The pass-through worker pool, sized from passthru-http.properties as Synapse sizes it. */
    ThreadPoolExecutor workerPool(Path file) throws IOException {
        Properties p = new Properties();
        if (Files.exists(file)) {
            try (InputStream in = Files.newInputStream(file)) { p.load(in); }
        } else {
            log.warn(L_PT_CONFIG, "Cannot find " + file + ": using the default pass-through settings");
        }
        int core = intProp(p, "worker_pool_size_core", 400, 1), max = intProp(p, "worker_pool_size_max", 500, 1);
        int keepAlive = intProp(p, "worker_thread_keepalive_sec", 60, 0), queue = intProp(p, "worker_pool_queue_length", -1, -1);
        int timeout = intProp(p, "http.socket.timeout", 180000, 1);
        if (max < core) {
            log.warn(L_PT_CONFIG, "worker_pool_size_max " + max + " is below worker_pool_size_core " + core + ": using " + core);
            max = core;
        }
        int ioThreads = intProp(p, "io_threads_per_reactor", 2, 1), buffer = intProp(p, "io_buffer_size", 16384, 512);
        // Idle connections close after http.socket.timeout, as in the pass-through transport.
        io = new PassThroughTransport.IoSettings(ioThreads, buffer, timeout);
        // As in Synapse: -1 is an unbounded queue (so the pool never grows past core), else a bounded one.
        BlockingQueue<Runnable> q = queue < 0 ? new LinkedBlockingQueue<>() : queue == 0 ? new SynchronousQueue<>() : new ArrayBlockingQueue<>(queue);
        ThreadPoolExecutor pool = new ThreadPoolExecutor(core, max, keepAlive, TimeUnit.SECONDS, q, named("PassThroughMessageProcessor-"));
        log.info(L_PT_CONFIG, "Pass-through worker pool: core " + core + ", max " + max + ", keep-alive " + keepAlive + " sec, queue "
                + (queue < 0 ? "unbounded" : String.valueOf(queue)) + ", socket timeout " + timeout + " ms");
        log.info(L_PT_CONFIG, "Pass-through I/O: " + ioThreads + " I/O threads per reactor, buffer " + buffer + " bytes");
        return pool;
    }

    final AtomicLong lastRejectWarn = new AtomicLong();

    /** A request the worker pool refused (counted by the listener, answered 503): one WARN a second at most. */
    void warnRejected() {
        long now = System.currentTimeMillis(), last = lastRejectWarn.get();
        if (now - last > 1000 && lastRejectWarn.compareAndSet(last, now)) {
            log.warn(L_PT_CONFIG, "Worker pool exhausted (queue full): answering 503 Service Unavailable");
        }
    }

    static int intProp(Properties p, String key, int dflt, int min) {
        String v = p.getProperty(key, "").trim();
        if (v.isEmpty()) return dflt;
        try {
            if (Integer.parseInt(v) >= min) return Integer.parseInt(v);
        } catch (NumberFormatException ignored) { /* warned below */ }
        log.warn(L_PT_CONFIG, "Invalid value '" + v + "' for " + key + " in passthru-http.properties: using " + dflt);
        return dflt;
    }

    static ThreadFactory named(String prefix) {
        AtomicInteger n = new AtomicInteger();
        return r -> {
            Thread t = new Thread(r, prefix + n.incrementAndGet());
            t.setDaemon(true); // the listeners' acceptor threads keep the JVM alive, not the pools
            return t;
        };
    }

    // ------------------------------------------------------------------ pass-through transport

    void passThrough(PassThroughTransport.Exchange ex, String transport, int port) {
        try {
            ex.setResponseHeader("Server", "WSO2-PassThrough-HTTP");
            mediate(ex, transport, port);
        } catch (Throwable t) {
            log.error(L_RELAY, "Error while processing " + ex.getRequestURI() + ": " + t);
            if (ex.getResponseCode() < 0) send(ex, 500, XML, fault("soapenv:Server", String.valueOf(t.getMessage())));
        }
    }

    void mediate(PassThroughTransport.Exchange ex, String transport, int port) throws IOException {
        String path = ex.getRequestURI().getPath(), method = ex.getRequestMethod();
        byte[] body = ex.getRequestBody(); // read whole by the reactor (Content-Length or chunked)
        Proxy proxy = lookup(path);
        if (proxy == null || !proxy.transports.contains(transport)) {
            send(ex, 404, XML, fault("soapenv:Client", "The endpoint reference (EPR) for the Operation not found is " + path));
        } else if (method.equals("GET") || method.equals("HEAD")) {
            String query = ex.getRequestURI().getRawQuery(), host = ex.getRequestHeaders().getFirst("Host");
            if (query != null && query.toLowerCase(Locale.ROOT).startsWith("wsdl")) {
                send(ex, 200, XML, utf8(proxy.wsdl(transport + "://" + (host != null ? host : listenHost + ":" + port))));
            } else {
                send(ex, 200, TEXT, utf8("Proxy service " + proxy.name + " is deployed on " + nodeName + "\n"));
            }
        } else if (!method.equals("POST") && !method.equals("PUT")) {
            ex.setResponseHeader("Allow", "GET, HEAD, POST, PUT");
            send(ex, 405, TEXT, utf8("Method " + method + " is not allowed\n"));
        } else {
            message(ex, proxy, path, body);
        }
    }

    void message(PassThroughTransport.Exchange ex, Proxy proxy, String path, byte[] body) throws IOException {
        // Build the message for real: this allocation is what makes heap and GC settings matter.
        String type = ex.getRequestHeaders().getFirst("Content-Type");
        String lc = type == null ? "" : type.toLowerCase(Locale.ROOT);
        try {
            if (lc.contains("json")) Json.parse(new String(body, UTF_8));
            else if (lc.isEmpty() || lc.contains("xml")) DOM.get().parse(new ByteArrayInputStream(body));
            // any other type is relayed untouched, like Synapse's binary relay
        } catch (Json.JsonError | SAXException e) {
            log.error(L_RELAY, "Error while building Passthrough stream: " + e.getMessage());
            if (e instanceof SAXException) send(ex, 500, XML, fault("soapenv:Client", e.getMessage()));
            else send(ex, 400, "application/json", utf8("{\"error\": \"" + Json.escape(e.getMessage()) + "\"}"));
            return;
        }
        String messageId = "urn:uuid:" + fastUuid(); // one id per message, shared by all its log lines
        for (LogSpec l : proxy.logs) log.write("INFO", L_LOG_MEDIATOR, l.message(path, messageId, ex.getRequestHeaders(), body), false);
        String lookupError = proxy.dbLookup != null ? proxy.dbLookup.run() : null; // borrows from its pool, waiting up to maxWait
        if (lookupError != null) {
            send(ex, 500, XML, fault("soapenv:Server", lookupError));
            return;
        }
        if (proxy.delayMillis > 0) sleep(proxy.delayMillis); // a slow backend holds the worker thread, as in Synapse
        if (proxy.respond) send(ex, 200, type != null ? type : XML, body);
        else send(ex, 202, null, new byte[0]); // no <respond/>: accepted, nothing to send back
    }

    /** /services/Name, /services/Name/anything or /services/Name.SomeEndpoint. */
    Proxy lookup(String path) {
        if (path == null || !path.startsWith("/services/")) return null;
        String seg = path.substring("/services/".length());
        if (seg.indexOf('/') >= 0) seg = seg.substring(0, seg.indexOf('/'));
        Map<String, Proxy> all = proxies;
        Proxy p = all.get(seg);
        for (int dot = seg.lastIndexOf('.'); p == null && dot > 0; dot = seg.lastIndexOf('.', dot - 1)) p = all.get(seg.substring(0, dot));
        return p;
    }

    /** Answer with a fixed length (keeps the connection alive); the transport's reactor writes it. */
    static void send(PassThroughTransport.Exchange ex, int code, String type, byte[] body) {
        ex.send(code, type, body);
    }

    static byte[] fault(String code, String reason) {
        return utf8("<?xml version='1.0' encoding='utf-8'?><soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\">"
                + "<soapenv:Body><soapenv:Fault><faultcode>" + code + "</faultcode><faultstring>" + xmlEscape(reason)
                + "</faultstring><detail/></soapenv:Fault></soapenv:Body></soapenv:Envelope>");
    }

    static byte[] utf8(String s) { return s.getBytes(UTF_8); }

    /** Sleeps; false when interrupted (the interrupt flag stays set). */
    static boolean sleep(long millis) {
        try {
            Thread.sleep(millis);
            return true;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return false;
        }
    }

    static void closeQuietly(Closeable c) {
        try {
            c.close();
        } catch (IOException ignored) { /* closing anyway */ }
    }

    static String xmlEscape(String s) {
        return s == null ? "" : s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\"", "&quot;");
    }

    /** A version-4 UUID without SecureRandom's lock: message ids need not be unguessable. */
    static String fastUuid() {
        ThreadLocalRandom r = ThreadLocalRandom.current();
        return new UUID((r.nextLong() & ~0xF000L) | 0x4000L, (r.nextLong() & 0x3FFFFFFFFFFFFFFFL) | 0x8000000000000000L).toString();
    }

    // ------------------------------------------------------------------ management console

    void console(PassThroughTransport.Exchange ex) {
        ex.setResponseHeader("Server", "WSO2 Carbon Server");
        String path = ex.getRequestURI().getPath();
        if (path.equals("/")) {
            ex.setResponseHeader("Location", "/carbon/");
            send(ex, 302, null, new byte[0]);
        } else if (path.equals(ConsoleLogin.ACTION) && consoleLogin.required()) {
            consoleLogin.login(ex); // against WSO2_USER_DB; a session cookie when the user is known
        } else if (path.equals("/carbon") || path.startsWith("/carbon/")) {
            String user = consoleLogin.user(ex);
            StringBuilder list = new StringBuilder();
            for (String name : new TreeSet<>(proxies.keySet())) list.append("<li>").append(xmlEscape(name)).append("</li>");
            String content = user == null && consoleLogin.required() ? ConsoleLogin.formHtml()
                    : (user != null ? "<p id=\"user\">Signed-in as: " + xmlEscape(user) + "</p>" : "") + "<h2>Proxy services</h2><ul>" + list + "</ul>";
            send(ex, 200, HTML, utf8("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>WSO2 Management Console</title>"
                    + "</head><body><h1>WSO2 Enterprise Integrator</h1><p>Node: <b id=\"node\">" + xmlEscape(nodeName) + "</b>"
                    + (membership != null ? " (cluster member " + membership.uuid + ")" : "") + "</p>"
                    + content + "</body></html>\n"));
        } else {
            send(ex, 404, HTML, utf8("<html><body>Not found: " + xmlEscape(path) + "</body></html>\n"));
        }
    }

    // ------------------------------------------------------------------ XML

    /** One parser per worker thread: factories are costly and builders are not thread-safe. */
    static final ThreadLocal<DocumentBuilder> DOM = ThreadLocal.withInitial(EiNode::newBuilder);

    static final ErrorHandler QUIET = new ErrorHandler() { // the default one prints "[Fatal Error]" to stderr
        @Override public void warning(SAXParseException e) { }
        @Override public void error(SAXParseException e) { }
        @Override public void fatalError(SAXParseException e) throws SAXException { throw e; }
    };

    /** A namespace-aware builder that refuses DOCTYPEs and external entities (no XXE). */
    static DocumentBuilder newBuilder() {
        try {
            DocumentBuilderFactory f = DocumentBuilderFactory.newInstance();
            f.setNamespaceAware(true);
            f.setFeature(XMLConstants.FEATURE_SECURE_PROCESSING, true);
            f.setFeature("http://apache.org/xml/features/disallow-doctype-decl", true);
            f.setFeature("http://xml.org/sax/features/external-general-entities", false);
            f.setFeature("http://xml.org/sax/features/external-parameter-entities", false);
            f.setFeature("http://apache.org/xml/features/nonvalidating/load-external-dtd", false);
            f.setAttribute(XMLConstants.ACCESS_EXTERNAL_DTD, "");
            f.setAttribute(XMLConstants.ACCESS_EXTERNAL_SCHEMA, "");
            f.setXIncludeAware(false);
            f.setExpandEntityReferences(false);
            DocumentBuilder b = f.newDocumentBuilder();
            b.setErrorHandler(QUIET);
            return b;
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    }

    static Element parseFile(Path file) throws IOException, SAXException {
        return newBuilder().parse(file.toFile()).getDocumentElement();
    }

    /** A config file's root element, or a start-up error naming the file. */
    static Element readXml(Path file, String logger) throws StartupError {
        try {
            return parseFile(file);
        } catch (IOException | SAXException e) {
            throw new StartupError(logger, "Cannot read " + file + ": " + e.getMessage());
        }
    }

    /** Child elements with this local name (any namespace); all of them when name is null. */
    static List<Element> children(Element parent, String name) {
        List<Element> out = new ArrayList<>();
        for (Node n = parent == null ? null : parent.getFirstChild(); n != null; n = n.getNextSibling()) {
            if (n instanceof Element && (name == null || name.equals(localName(n)))) out.add((Element) n);
        }
        return out;
    }

    static Element child(Element parent, String name) {
        List<Element> l = children(parent, name);
        return l.isEmpty() ? null : l.get(0);
    }

    static String localName(Node n) { return n.getLocalName() != null ? n.getLocalName() : n.getNodeName(); }

    static String text(Element e, String dflt) { return e == null ? dflt : e.getTextContent().trim(); }

    // ------------------------------------------------------------------ proxy services

    /** A deployed proxy: its transports, log mediators, whether it responds, a backend delay. */
    static final class Proxy {
        final String name;
        final Path file;
        final Set<String> transports = new HashSet<>();
        final List<LogSpec> logs = new ArrayList<>();
        boolean respond;
        Datasources.Lookup dbLookup; // a <dblookup> mediator (one per proxy)
        long delayMillis;

        Proxy(String name, Path file) { this.name = name; this.file = file; }

        static Proxy parse(Path file) throws Exception {
            Element root = parseFile(file);
            if (!"proxy".equals(localName(root))) throw new IllegalArgumentException("the root element is <" + root.getTagName() + ">, not <proxy>");
            String name = root.getAttribute("name").trim();
            if (name.isEmpty() || name.contains("/")) throw new IllegalArgumentException("the proxy has no valid name attribute");
            Proxy p = new Proxy(name, file);
            String tr = root.getAttribute("transports").trim().toLowerCase(Locale.ROOT);
            p.transports.addAll(Arrays.asList((tr.isEmpty() || tr.equals("all") ? "http,https" : tr).split("[ ,]+")));
            Element in = child(child(root, "target"), "inSequence");
            if (in == null) throw new IllegalArgumentException("proxy " + name + " has no <target><inSequence>");
            for (Element m : children(in, null)) {
                if (p.respond) break; // nothing after <respond/> runs
                switch (localName(m)) {
                    case "log": p.logs.add(LogSpec.parse(m)); break;
                    case "respond": p.respond = true; break;
                    case "dblookup": p.dbLookup = Datasources.Lookup.parse(m); break;
                    default: throw new IllegalArgumentException("mediator <" + localName(m) + "> is not supported by the testbed (only log, dblookup, respond)");
                }
            }
            for (Element param : children(root, "parameter")) {
                if (!"testbed.backendDelayMillis".equals(param.getAttribute("name"))) continue;
                String v = param.getTextContent().trim();
                if (!v.matches("\\d{1,9}")) throw new IllegalArgumentException("testbed.backendDelayMillis '" + v + "' is not a number of milliseconds");
                p.delayMillis = Long.parseLong(v);
            }
            return p;
        }

        /** A small WSDL 1.1 for ?wsdl: one mediate operation, one SOAP 1.1 endpoint. */
        String wsdl(String base) { // %1$s: the proxy name, %2$s: scheme://host:port
            return String.format("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<wsdl:definitions xmlns:wsdl=\"http://schemas.xmlsoap.org/wsdl/\" "
                    + "xmlns:soap=\"http://schemas.xmlsoap.org/wsdl/soap/\" xmlns:tns=\"http://ws.apache.org/axis2\" "
                    + "targetNamespace=\"http://ws.apache.org/axis2\" name=\"%1$s\">\n  <wsdl:portType name=\"%1$sPortType\">"
                    + "<wsdl:operation name=\"mediate\"/></wsdl:portType>\n  <wsdl:binding name=\"%1$sSoap11Binding\" type=\"tns:%1$sPortType\">"
                    + "<soap:binding transport=\"http://schemas.xmlsoap.org/soap/http\" style=\"document\"/><wsdl:operation name=\"mediate\">"
                    + "<soap:operation soapAction=\"urn:mediate\"/></wsdl:operation></wsdl:binding>\n  <wsdl:service name=\"%1$s\">"
                    + "<wsdl:port name=\"%1$sHttpSoap11Endpoint\" binding=\"tns:%1$sSoap11Binding\">"
                    + "<soap:address location=\"%2$s/services/%1$s.%1$sHttpSoap11Endpoint\"/></wsdl:port></wsdl:service>\n</wsdl:definitions>\n",
                    xmlEscape(name), xmlEscape(base));
        }
    }

    /** A log mediator: level simple|full|custom|headers, its properties and separator. */
    static final class LogSpec {
        String level, separator;
        final List<String[]> props = new ArrayList<>();

        static LogSpec parse(Element e) {
            LogSpec l = new LogSpec();
            l.level = e.hasAttribute("level") ? e.getAttribute("level").trim().toLowerCase(Locale.ROOT) : "simple";
            if (!Set.of("simple", "full", "custom", "headers").contains(l.level)) {
                throw new IllegalArgumentException("log level '" + l.level + "' is not one of simple, full, custom, headers");
            }
            l.separator = e.hasAttribute("separator") ? e.getAttribute("separator") : ", ";
            for (Element p : children(e, "property")) { // expressions are not evaluated: their text is logged
                l.props.add(new String[] {p.getAttribute("name"), p.hasAttribute("value") ? p.getAttribute("value") : p.getAttribute("expression")});
            }
            return l;
        }

        /** The message as Synapse's LogMediator builds it: full and headers extend simple. */
        String message(String to, String messageId, PassThroughTransport.Headers headers, byte[] body) {
            StringBuilder sb = new StringBuilder(160);
            if (!level.equals("custom")) {
                sb.append("To: ").append(to).append(separator).append("MessageID: ").append(messageId).append(separator).append("Direction: request");
            }
            for (String[] p : props) (sb.length() > 0 ? sb.append(separator) : sb).append(p[0]).append(" = ").append(p[1]);
            if (level.equals("headers")) {
                for (Map.Entry<String, List<String>> h : new TreeMap<>(headers).entrySet()) {
                    for (String v : h.getValue()) sb.append(separator).append(h.getKey()).append(" = ").append(v);
                }
            } else if (level.equals("full")) {
                sb.append(separator).append("Envelope: ").append(oneLine(new String(body, UTF_8)));
            }
            return sb.toString();
        }

        static final Pattern BREAK = Pattern.compile("[ \\t]*[\\r\\n]\\s*");

        /** The body on one line: a line break and its indentation go (between words a space stays). */
        static String oneLine(String s) {
            return BREAK.matcher(s).replaceAll(m -> m.start() == 0 || m.end() == s.length()
                    || s.charAt(m.start() - 1) == '>' || s.charAt(m.end()) == '<' ? "" : " ");
        }
    }

    /** Hot deployment: polls the proxy-services folder (mtime + size of each *.xml file). */
    final class Deployer {
        final Path dir;
        final Map<Path, List<Long>> seen = new HashMap<>(); // file -> [mtime, size]
        final Map<Path, String> names = new HashMap<>();     // file -> the proxy it deployed
        final Map<String, Proxy> deployed = new HashMap<>();

        Deployer(Path dir) throws IOException {
            this.dir = dir;
            Files.createDirectories(dir);
        }

        void scanSafely() {
            try {
                if (!stopping) scan();
            } catch (Throwable t) {
                log.error(L_DEPLOYER, "Error while scanning " + dir + ": " + t);
            }
        }

        synchronized void scan() throws IOException {
            Map<Path, List<Long>> now = new TreeMap<>();
            if (Files.isDirectory(dir)) try (DirectoryStream<Path> ds = Files.newDirectoryStream(dir, "*.xml")) { // gone: all undeployed
                for (Path f : ds) {
                    if (f.getFileName().toString().startsWith(".")) continue; // temp files of editors and atomic writers
                    try {
                        BasicFileAttributes a = Files.readAttributes(f, BasicFileAttributes.class);
                        if (a.isRegularFile()) now.put(f, List.of(a.lastModifiedTime().toMillis(), a.size()));
                    } catch (IOException e) { /* gone between listing and reading: the next scan sees it gone */ }
                }
            }
            boolean changed = false;
            for (Path f : new ArrayList<>(seen.keySet())) {
                if (now.containsKey(f)) continue;
                seen.remove(f);
                String name = names.remove(f);
                if (name != null) {
                    deployed.remove(name);
                    log.info(L_DEPLOYER, "ProxyService named : " + name + " has been undeployed");
                    changed = true;
                }
            }
            for (Map.Entry<Path, List<Long>> e : now.entrySet()) {
                if (!e.getValue().equals(seen.put(e.getKey(), e.getValue()))) changed |= deploy(e.getKey()); // new or changed
            }
            if (changed) proxies = Map.copyOf(deployed);
        }

        /** Deploy or redeploy one file; a broken file logs an ERROR and keeps what was deployed. */
        boolean deploy(Path f) {
            Proxy p;
            try {
                p = Proxy.parse(f);
            } catch (Exception e) {
                log.error(L_DEPLOYER, "ProxyService Deployment from the file : " + f + " : Failed. " + e.getMessage());
                return false;
            }
            Proxy other = deployed.get(p.name);
            if (other != null && !other.file.equals(f)) {
                log.error(L_DEPLOYER, "ProxyService Deployment from the file : " + f + " : Failed. A proxy service named "
                        + p.name + " is already deployed from the file : " + other.file);
                return false;
            }
            String old = names.put(f, p.name);
            if (old != null) {
                deployed.remove(old);
                log.info(L_DEPLOYER, "ProxyService named : " + old + " has been undeployed");
            }
            deployed.put(p.name, p);
            log.info(L_DEPLOYER, "ProxyService named : " + p.name + " has been deployed from file : " + f);
            return true;
        }
    }

    // ------------------------------------------------------------------ membership

    /**
     * Well-known-address membership over a line protocol. A connecting peer sends
     * "HELLO <domain> <uuid> <host> <port>\n" and the server answers with its own HELLO line.
     * Every 250 ms each known member is probed; two failed probes in a row mean it left.
     */
    static final class Membership {
        final String domain, host, uuid = UUID.randomUUID().toString();
        final int port;
        final ServerSocket server;
        final Map<String, Peer> peers = new ConcurrentHashMap<>(); // "host:port" -> peer
        final ExecutorService handlers;
        final Thread acceptor, prober;
        volatile boolean running = true;

        static final class Peer {
            final String host;
            final int port;
            String uuid;   // set while joined
            int failures;
            String warned; // "domain uuid" already warned about
            Peer(String host, int port) { this.host = host; this.port = port; }
        }

        /** From the <clustering> section of axis2.xml; null when clustering is disabled. */
        static Membership configure(Path home) throws StartupError {
            Path file = home.resolve("conf/axis2/axis2.xml");
            if (!Files.exists(file)) file = home.resolve("conf/axis2.xml");
            Element cl = Files.exists(file) ? child(readXml(file, L_CLUSTER), "clustering") : null;
            if (cl == null || !"true".equalsIgnoreCase(cl.getAttribute("enable").trim())) {
                log.info(L_CLUSTER, "Clustering has been disabled");
                return null;
            }
            Map<String, String> param = new HashMap<>();
            for (Element p : children(cl, "parameter")) param.put(p.getAttribute("name"), p.getTextContent().trim());
            if (!param.getOrDefault("membershipScheme", "wka").equals("wka")) {
                log.warn(L_CLUSTER, "Membership scheme '" + param.get("membershipScheme") + "' is not supported by the testbed: using wka");
            }
            log.info(L_CLUSTER, "Using wka based membership management scheme");
            String host = param.getOrDefault("localMemberHost", "127.0.0.1"), port = param.getOrDefault("localMemberPort", "4100");
            if (!port.matches("\\d{1,5}")) throw new StartupError(L_CLUSTER, "Invalid localMemberPort '" + port + "' in " + file);
            Membership m = new Membership(param.getOrDefault("domain", "wso2.carbon.domain"), host, Integer.parseInt(port));
            for (Element e : children(child(cl, "members"), "member")) {
                String h = text(child(e, "hostName"), ""), p = text(child(e, "port"), "");
                if (!p.matches("\\d{1,5}")) log.warn(L_CLUSTER, "Ignoring the well-known member " + h + ":" + p + " in " + file + ": bad port");
                else if (!(h.equals(host) && p.equals(port))) m.peers.putIfAbsent(h + ":" + p, new Peer(h, Integer.parseInt(p))); // not itself
            }
            log.info(L_CLUSTER, "Local member: [" + m.uuid + "] - Host:" + host + ", Port: " + port + ", Domain: " + m.domain
                    + ", well-known members: " + m.peers.keySet());
            return m;
        }

        Membership(String domain, String host, int port) throws StartupError {
            this.domain = domain;
            this.host = host;
            this.port = port;
            try {
                server = new ServerSocket();
                server.setReuseAddress(true);
                server.bind(new InetSocketAddress(host, port), 50);
            } catch (IOException e) {
                throw new StartupError(L_CLUSTER, "Cannot start clustering: member port " + port + " on " + host
                        + " is not available (" + e.getMessage() + ")");
            }
            String prefix = "hz._hzInstance_1_" + domain;
            handlers = Executors.newFixedThreadPool(2, named(prefix + ".IO.thread-in-"));
            acceptor = named(prefix + ".IO.thread-Acceptor-").newThread(this::acceptLoop);
            prober = named(prefix + ".cluster-").newThread(this::probeLoop);
        }

        byte[] hello() { return utf8("HELLO " + domain + " " + uuid + " " + host + " " + port + "\n"); }

        void start() { acceptor.start(); prober.start(); }

        void close() {
            running = false;
            closeQuietly(server);
            prober.interrupt();
            handlers.shutdownNow();
        }

        void acceptLoop() {
            while (running) {
                try {
                    Socket s = server.accept();
                    handlers.execute(() -> answer(s));
                } catch (IOException | RejectedExecutionException e) { /* closed (running is false now) or one failed accept */ }
            }
        }

        /** A peer connected: read its HELLO, answer with ours, and count it as seen. */
        void answer(Socket s) {
            try (s) {
                s.setSoTimeout(1000);
                String[] h = parse(readLine(s.getInputStream()));
                if (h == null) return;
                s.getOutputStream().write(hello());
                seen(h);
            } catch (IOException e) { /* a half-open probe; the peer retries */ }
        }

        void probeLoop() {
            while (running) {
                for (Peer p : peers.values()) {
                    String[] h = null;
                    try (Socket s = new Socket()) {
                        s.connect(new InetSocketAddress(p.host, p.port), 300);
                        s.setSoTimeout(300);
                        s.getOutputStream().write(hello());
                        h = parse(readLine(s.getInputStream()));
                    } catch (IOException e) { /* counted as a failure below */ }
                    if (!running) return;
                    if (h != null) seen(h);
                    else failed(p);
                }
                if (!sleep(250)) return;
            }
        }

        static String readLine(InputStream in) throws IOException {
            StringBuilder b = new StringBuilder(96);
            for (int c; (c = in.read()) >= 0 && c != '\n'; b.append((char) c)) {
                if (b.length() > 512) throw new IOException("HELLO line too long");
            }
            return b.toString();
        }

        /** {domain, uuid, host, port} from a HELLO line, or null. */
        static String[] parse(String line) {
            String[] t = line.trim().split(" ");
            if (t.length != 5 || !t[0].equals("HELLO") || !t[4].matches("\\d{1,5}")) return null;
            return Arrays.copyOfRange(t, 1, 5);
        }

        synchronized void seen(String[] h) {
            String dom = h[0], id = h[1];
            if (id.equals(uuid)) return; // this node itself, listed under another name
            Peer p = peers.computeIfAbsent(h[2] + ":" + h[3], k -> new Peer(h[2], Integer.parseInt(h[3])));
            p.failures = 0;
            if (!dom.equals(domain)) {
                if (p.uuid != null) left(p);
                if (!(dom + " " + id).equals(p.warned)) { // once per peer, not every 250 ms
                    p.warned = dom + " " + id;
                    log.warn(L_WKA, "Member [" + id + "]: /" + p.host + ":" + p.port + " is in the cluster domain " + dom
                            + ", not " + domain + ": not joining it");
                }
            } else if (!id.equals(p.uuid)) {
                if (p.uuid != null) left(p); // restarted faster than two probes
                p.uuid = id;
                log.info(L_WKA, "Member joined [" + id + "]: /" + p.host + ":" + p.port);
            }
        }

        synchronized void failed(Peer p) {
            if (p.uuid != null && ++p.failures >= 2) left(p);
        }

        void left(Peer p) {
            log.info(L_WKA, "Member left [" + p.uuid + "]: /" + p.host + ":" + p.port);
            p.uuid = null;
            p.failures = 0;
        }
    }

    // ------------------------------------------------------------------ JSON

    /** A small strict JSON parser (RFC 8259) building Maps, Lists, Strings, Longs, Doubles, Booleans. */
    static final class Json {
        static final char END = '\uFFFF'; // what peek() returns at the end of the input
        static final Pattern NUMBER = Pattern.compile("-?(?:0|[1-9][0-9]*)(\\.[0-9]+)?([eE][+-]?[0-9]+)?");

        @SuppressWarnings("serial")
        static final class JsonError extends RuntimeException {
            JsonError(String msg) { super(msg, null, false, false); } // no stack trace: malformed input is routine
        }

        private final String s;
        private int i;

        private Json(String s) { this.s = s; }

        static Object parse(String s) {
            Json j = new Json(s);
            Object v = j.value(0);
            if (j.peek() != END) throw j.err("Unexpected character '" + j.peek() + "' after the JSON value");
            return v;
        }

        JsonError err(String msg) { return new JsonError(msg + " at position " + i); }

        /** Skips blanks; the next character (not consumed), or END. */
        char peek() {
            while (i < s.length() && " \t\r\n".indexOf(s.charAt(i)) >= 0) i++;
            return i < s.length() ? s.charAt(i) : END;
        }

        /** Consumes c when it comes next. */
        boolean eat(char c) {
            boolean next = peek() == c;
            if (next) i++;
            return next;
        }

        void expect(char c) {
            if (!eat(c)) throw err(peek() == END ? "Unexpected end of input, expected '" + c + "'" : "Expected '" + c + "' but found '" + peek() + "'");
        }

        Object value(int depth) {
            if (depth > 512) throw err("JSON nested too deeply");
            char c = peek();
            if (eat('{')) {
                Map<String, Object> m = new LinkedHashMap<>();
                if (eat('}')) return m;
                do {
                    if (peek() != '"') throw err("Expected a string key");
                    String k = string();
                    expect(':');
                    m.put(k, value(depth + 1));
                } while (eat(','));
                expect('}');
                return m;
            }
            if (eat('[')) {
                List<Object> l = new ArrayList<>();
                if (eat(']')) return l;
                do l.add(value(depth + 1)); while (eat(','));
                expect(']');
                return l;
            }
            if (c == '"') return string();
            if (c == '-' || (c >= '0' && c <= '9')) {
                Matcher n = NUMBER.matcher(s).region(i, s.length());
                if (!n.lookingAt()) throw err("Bad number");
                i = n.end();
                boolean integral = n.group(1) == null && n.group(2) == null && n.group().length() <= 18;
                return integral ? (Object) Long.parseLong(n.group()) : (Object) Double.parseDouble(n.group());
            }
            for (String w : new String[] {"true", "false", "null"}) {
                if (s.startsWith(w, i)) {
                    i += w.length();
                    return w.equals("null") ? null : Boolean.valueOf(w);
                }
            }
            throw err(c == END ? "Unexpected end of input" : "Unexpected character '" + c + "'");
        }

        String string() {
            StringBuilder b = new StringBuilder();
            for (i++; i < s.length(); ) {
                char c = s.charAt(i++);
                if (c == '"') return b.toString();
                if (c < 0x20) throw err("Control character in a string");
                if (c != '\\') {
                    b.append(c);
                    continue;
                }
                int k = i < s.length() ? "\"\\/bfnrtu".indexOf(s.charAt(i++)) : -1;
                if (k >= 0 && k < 8) {
                    b.append("\"\\/\b\f\n\r\t".charAt(k));
                } else if (k == 8 && i + 4 <= s.length() && s.substring(i, i + 4).chars().allMatch(h -> Character.digit(h, 16) >= 0)) {
                    b.append((char) Integer.parseInt(s.substring(i, i + 4), 16));
                    i += 4;
                } else {
                    throw err("Bad escape in a string");
                }
            }
            throw err("Unterminated string");
        }

        static String escape(String v) {
            StringBuilder b = new StringBuilder(v.length() + 8);
            for (char c : v.toCharArray()) {
                if (c == '"' || c == '\\') b.append('\\').append(c);
                else if (c < 0x20) b.append(String.format("\\u%04x", (int) c));
                else b.append(c);
            }
            return b.toString();
        }
    }

    // ------------------------------------------------------------------ logging

    /**
     * repository/logs/wso2carbon.log in the EI 6.3+ layout [%d] [%T] [%S] [%t] %P%5p {%c} - %x %m%n
     * (tenant -1234, server key EI-Core, empty %P and %x). One line per event, flushed at once.
     */
    static final class Log {
        static final DateTimeFormatter TS = DateTimeFormatter.ofPattern("yyyy-MM-dd HH:mm:ss,SSS");
        private final Writer out;
        private boolean closed;

        Log(Path file) throws IOException {
            Files.createDirectories(file.getParent());
            out = new BufferedWriter(new OutputStreamWriter(new FileOutputStream(file.toFile(), true), UTF_8), 16384);
        }

        void info(String logger, String msg) { write("INFO", logger, msg, true); }
        void warn(String logger, String msg) { write("WARN", logger, msg, true); }
        void error(String logger, String msg) { write("ERROR", logger, msg, true); }

        /** console: also to stdout (integrator.sh sends it to repository/logs/stdout.log), as Carbon does. */
        void write(String level, String logger, String msg, boolean console) {
            if (msg.indexOf('\n') >= 0 || msg.indexOf('\r') >= 0) msg = msg.replace("\r\n", " ").replace('\n', ' ').replace('\r', ' ');
            String rest = "] [-1234] [EI-Core] [" + Thread.currentThread().getName() + "] "
                    + " ".repeat(Math.max(0, 5 - level.length())) + level + " {" + logger + "} - " + msg + "\n", line;
            synchronized (this) { // the time is taken under the lock, so the file's timestamps never go back
                line = "[" + TS.format(LocalDateTime.now()) + rest;
                try {
                    if (!closed) {
                        out.write(line);
                        out.flush();
                    }
                } catch (IOException ignored) { /* a full disk must not take requests down */ }
            }
            if (console) {
                System.out.print(line);
                System.out.flush();
            }
        }

        synchronized void close() {
            closed = true;
            closeQuietly(out);
        }
    }
}
