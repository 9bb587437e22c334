/*
 * eiperf testbed node: the pass-through HTTP/HTTPS transport, shaped like Synapse's.
 *
 * EI 6.x runs on JDK 8 and 11; the JDK 11 runtime the testbed uses has no jdk.httpserver, so the
 * node serves HTTP itself, the way Synapse's pass-through transport does: one acceptor per
 * listener hands connections to `io_threads_per_reactor` non-blocking I/O reactors (a Selector
 * each, read buffers of `io_buffer_size`); a reactor parses HTTP/1.1 (keep-alive,
 * Content-Length and chunked bodies, Expect: 100-continue), hands each complete request to the
 * worker pool and writes the answer back; TLS is an SSLEngine on the reactor thread; a
 * connection idle for `http.socket.timeout` is closed. A request the worker pool refuses
 * (queue full) is counted and answered 503. Counters are MBeans named as on a real node:
 * org.apache.synapse:Type=Transport,Name=passthru-http(s)-receiver and
 * org.apache.synapse:Type=PassThroughConnections,Name=http(s)-listener.
 * JDK 11 standard library only; compiled with --release 11.
 */

import java.io.*;
import java.lang.management.ManagementFactory;
import java.net.*;
import java.nio.ByteBuffer;
import java.nio.channels.*;
import java.util.*;
import java.util.concurrent.*;
import java.util.concurrent.atomic.*;
import javax.management.*;
import javax.net.ssl.*;

import static java.nio.charset.StandardCharsets.ISO_8859_1;

public final class PassThroughTransport {
    static final int MAX_HEAD = 64 * 1024;              // request line + headers
    static final long FRESH_IDLE_NS = 200_000_000L;     // a new connection without a request yet, when stopping
    static final long MAX_BODY = 256L * 1024 * 1024;
    static final ByteBuffer EMPTY = ByteBuffer.allocate(0);

    private PassThroughTransport() { }

    /** What a listener hands each complete request to, on a worker thread. */
    public interface Handler { void handle(Exchange ex) throws Exception; }

    /** The I/O side of passthru-http.properties. */
    static final class IoSettings {
        final int ioThreads, bufferSize, socketTimeoutMs;
        IoSettings(int ioThreads, int bufferSize, int socketTimeoutMs) {
            this.ioThreads = ioThreads;
            this.bufferSize = bufferSize;
            this.socketTimeoutMs = socketTimeoutMs;
        }
    }

    // ------------------------------------------------------------------ JMX

    /** Synapse's TransportView attributes the testbed keeps (plus the rejections it counts). */
    public interface TransportViewMBean {
        int getActiveThreadCount();
        int getQueueSize();
        int getWorkerPoolSize();
        long getMessagesReceived();
        long getMessagesSent();
        long getFaultsReceiving();
        long getBytesReceived();
        long getBytesSent();
        long getRejectedMessages();
    }

    /** Synapse's PassThroughConnections view: connections open now and in all. */
    public interface ConnectionsViewMBean {
        int getActiveConnections();
        long getTotalConnections();
        long getTimedOutConnections();
    }

    /** The counters of one listener, served over JMX. */
    static final class Counters implements TransportViewMBean, ConnectionsViewMBean {
        final ThreadPoolExecutor pool;
        final AtomicLong received = new AtomicLong(), sent = new AtomicLong(), faults = new AtomicLong(),
                bytesIn = new AtomicLong(), bytesOut = new AtomicLong(), rejected = new AtomicLong(),
                total = new AtomicLong(), timedOut = new AtomicLong();
        final AtomicInteger active = new AtomicInteger();
        final List<ObjectName> names = new ArrayList<>();

        Counters(ThreadPoolExecutor pool) { this.pool = pool; }

        @Override public int getActiveThreadCount() { return pool.getActiveCount(); }
        @Override public int getQueueSize() { return pool.getQueue().size(); }
        @Override public int getWorkerPoolSize() { return pool.getPoolSize(); }
        @Override public long getMessagesReceived() { return received.get(); }
        @Override public long getMessagesSent() { return sent.get(); }
        @Override public long getFaultsReceiving() { return faults.get(); }
        @Override public long getBytesReceived() { return bytesIn.get(); }
        @Override public long getBytesSent() { return bytesOut.get(); }
        @Override public long getRejectedMessages() { return rejected.get(); }
        @Override public int getActiveConnections() { return active.get(); }
        @Override public long getTotalConnections() { return total.get(); }
        @Override public long getTimedOutConnections() { return timedOut.get(); }

        /** Register as org.apache.synapse:Type=Transport,Name=passthru-<scheme>-receiver and
         *  Type=PassThroughConnections,Name=<scheme>-listener. */
        void register(String scheme) throws JMException {
            MBeanServer mbs = ManagementFactory.getPlatformMBeanServer();
            ObjectName t = new ObjectName("org.apache.synapse:Type=Transport,Name=passthru-" + scheme + "-receiver");
            ObjectName c = new ObjectName("org.apache.synapse:Type=PassThroughConnections,Name=" + scheme + "-listener");
            mbs.registerMBean(new StandardMBean(this, TransportViewMBean.class), t);
            names.add(t);
            mbs.registerMBean(new StandardMBean(this, ConnectionsViewMBean.class), c);
            names.add(c);
        }

        void unregister() {
            MBeanServer mbs = ManagementFactory.getPlatformMBeanServer();
            for (ObjectName n : names) {
                try { mbs.unregisterMBean(n); } catch (JMException ignored) { /* stopping anyway */ }
            }
        }
    }

    // ------------------------------------------------------------------ the exchange

    /** Request headers keyed as the JDK's HttpServer keys them ("Content-type"), in order. */
    @SuppressWarnings("serial")
    public static final class Headers extends TreeMap<String, List<String>> {
        static String key(String k) {
            return k.isEmpty() ? k : Character.toUpperCase(k.charAt(0)) + k.substring(1).toLowerCase(Locale.ROOT);
        }
        void add(String k, String v) { computeIfAbsent(key(k), x -> new ArrayList<>(1)).add(v); }
        public String getFirst(String k) {
            List<String> l = get(key(k));
            return l == null || l.isEmpty() ? null : l.get(0);
        }
    }

    /** One request and its answer: what the worker sees. */
    public static final class Exchange {
        final Conn conn;
        final String method, version;
        final URI uri;
        final Headers requestHeaders;
        final byte[] body;
        final Map<String, String> responseHeaders = new LinkedHashMap<>();
        volatile int responseCode = -1;

        Exchange(Conn conn, String method, URI uri, String version, Headers headers, byte[] body) {
            this.conn = conn;
            this.method = method;
            this.uri = uri;
            this.version = version;
            this.requestHeaders = headers;
            this.body = body;
        }

        public String getRequestMethod() { return method; }
        public URI getRequestURI() { return uri; }
        public Headers getRequestHeaders() { return requestHeaders; }
        public byte[] getRequestBody() { return body; }
        public int getResponseCode() { return responseCode; }
        public void setResponseHeader(String name, String value) { responseHeaders.put(name, value); }

        /** Answer with a fixed length (HEAD: headers only); the reactor writes it. */
        public void send(int code, String contentType, byte[] content) {
            if (responseCode >= 0) return;
            responseCode = code;
            if (contentType != null) responseHeaders.put("Content-Type", contentType);
            conn.respond(this, code, content, false);
        }

        boolean keepAlive() {
            String c = requestHeaders.getFirst("Connection");
            c = c == null ? "" : c.toLowerCase(Locale.ROOT);
            return version.equals("HTTP/1.1") ? !c.contains("close") : c.contains("keep-alive");
        }
    }

    static String reason(int code) {
        switch (code) {
            case 100: return "Continue";
            case 200: return "OK";
            case 202: return "Accepted";
            case 302: return "Found";
            case 400: return "Bad Request";
            case 404: return "Not Found";
            case 405: return "Method Not Allowed";
            case 408: return "Request Timeout";
            case 413: return "Payload Too Large";
            case 431: return "Request Header Fields Too Large";
            case 500: return "Internal Server Error";
            case 501: return "Not Implemented";
            case 503: return "Service Unavailable";
            default: return "Status " + code;
        }
    }

    // ------------------------------------------------------------------ listener

    /** A bound port: an acceptor thread and its I/O reactors, one worker pool behind them. */
    static final class Listener implements Closeable {
        final String name;
        final ServerSocketChannel server;
        final SSLContext ssl;
        final String[] protocols;
        final IoSettings io;
        final ThreadPoolExecutor workers;
        final Handler handler;
        final Counters counters;
        final Reactor[] reactors;
        final Thread acceptor;
        final Runnable onReject;
        volatile boolean open = true;
        volatile boolean draining;      // stopping: answer what was received, then close
        int next;

        /** Binds now (a taken port throws); threads start with start(). */
        Listener(String name, InetSocketAddress addr, SSLContext ssl, IoSettings io, ThreadPoolExecutor workers,
                 Handler handler, Counters counters, Runnable onReject) throws IOException {
            this.name = name;
            this.ssl = ssl;
            this.protocols = new String[] {"TLSv1.3", "TLSv1.2"};
            this.io = io;
            this.workers = workers;
            this.handler = handler;
            this.counters = counters;
            this.onReject = onReject;
            server = ServerSocketChannel.open();
            try {
                server.setOption(StandardSocketOptions.SO_REUSEADDR, true);
                server.bind(addr, 1024);
                reactors = new Reactor[Math.max(1, io.ioThreads)];
                for (int i = 0; i < reactors.length; i++) reactors[i] = new Reactor(this, name + " I/O dispatcher-" + (i + 1));
            } catch (IOException | RuntimeException e) {
                server.close();
                throw e;
            }
            acceptor = new Thread(this::acceptLoop, name + " I/O acceptor"); // not a daemon: it keeps the JVM up
        }

        void start() {
            for (Reactor r : reactors) r.thread.start();
            acceptor.start();
        }

        void acceptLoop() {
            while (open) {
                try {
                    SocketChannel ch = server.accept();
                    ch.configureBlocking(false);
                    ch.setOption(StandardSocketOptions.TCP_NODELAY, true); // no 40 ms Nagle stalls
                    reactors[Math.floorMod(next++, reactors.length)].add(ch);
                } catch (ClosedChannelException e) {
                    return;
                } catch (IOException e) {
                    EiNode.sleep(10); // out of file descriptors, or a reset before accept: go on
                }
            }
        }

        /**
         * Stop taking connections (the port is freed; new ones are refused, so nginx tries the next
         * upstream). The connections already accepted keep being served; from now on each closes
         * after its answer.
         */
        void stopAccepting() {
            draining = true;
            open = false;
            EiNode.closeQuietly(server);
            try {
                acceptor.join(200); // a connection accepted just now reaches its reactor first
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }

        /**
         * True when no accepted connection holds a request that is not answered yet. Cutting such a
         * connection would lose a request nginx has already sent (it does not resend a POST: 502).
         */
        boolean quiet() {
            for (Reactor r : reactors) if (!r.quiet()) return false;
            return true;
        }

        @Override
        public void close() {
            stopAccepting();
            for (Reactor r : reactors) r.close();
        }
    }

    // ------------------------------------------------------------------ reactor

    /** One I/O thread: a Selector over its connections; all socket I/O happens here. */
    static final class Reactor implements Runnable {
        final Listener listener;
        final Selector selector;
        final Thread thread;
        final Queue<Runnable> tasks = new ConcurrentLinkedQueue<>();
        volatile boolean open = true;
        long lastSweep = System.nanoTime();

        Reactor(Listener listener, String name) throws IOException {
            this.listener = listener;
            this.selector = Selector.open();
            this.thread = new Thread(this, name);
            thread.setDaemon(true);
        }

        void add(SocketChannel ch) {
            run(() -> {
                try {
                    Conn c = new Conn(this, ch);
                    c.key = ch.register(selector, SelectionKey.OP_READ, c);
                    listener.counters.active.incrementAndGet();
                    listener.counters.total.incrementAndGet();
                } catch (IOException e) {
                    EiNode.closeQuietly(ch);
                }
            });
        }

        /** Asked from the stopping thread: are all of this reactor's connections quiescent? */
        boolean quiet() {
            if (!thread.isAlive()) return true;
            CompletableFuture<Boolean> answer = new CompletableFuture<>();
            run(() -> {
                long now = System.nanoTime();
                boolean all = true;
                for (SelectionKey k : selector.keys()) all &= ((Conn) k.attachment()).quiescent(now);
                answer.complete(all);
            });
            try {
                return answer.get(200, TimeUnit.MILLISECONDS);
            } catch (Exception e) {
                return false;
            }
        }

        /** Run `task` on this reactor's thread. */
        void run(Runnable task) {
            tasks.add(task);
            selector.wakeup();
        }

        @Override
        public void run() {
            try {
                while (open) {
                    selector.select(500);
                    for (Runnable t; (t = tasks.poll()) != null; ) t.run();
                    Set<SelectionKey> ready = selector.selectedKeys();
                    for (SelectionKey k : ready) {
                        Conn c = (Conn) k.attachment();
                        try {
                            if (k.isValid() && k.isWritable()) c.flush();
                            if (k.isValid() && k.isReadable()) c.read();
                        } catch (IOException | RuntimeException e) {
                            c.close();
                        }
                    }
                    ready.clear();
                    long now = System.nanoTime();
                    if (now - lastSweep > 500_000_000L) {
                        lastSweep = now;
                        closeIdle(now);
                    }
                }
            } catch (IOException | ClosedSelectorException e) {
                // closed while stopping
            } finally {
                for (SelectionKey k : selector.keys()) ((Conn) k.attachment()).close();
                EiNode.closeQuietly(selector);
            }
        }

        /** http.socket.timeout: a connection without a request in a worker, idle that long, closes. */
        void closeIdle(long now) {
            long limit = listener.io.socketTimeoutMs * 1_000_000L;
            for (SelectionKey k : selector.keys()) {
                Conn c = (Conn) k.attachment();
                if (!c.busy && now - c.lastActive > limit) {
                    listener.counters.timedOut.incrementAndGet();
                    c.close();
                }
            }
        }

        void close() {
            open = false;
            selector.wakeup();
        }
    }

    // ------------------------------------------------------------------ connection

    /** One client connection: its buffers, TLS engine, request parser, pending output. */
    static final class Conn {
        final Reactor reactor;
        final Listener listener;
        final SocketChannel ch;
        final SSLEngine tls;
        SelectionKey key;
        ByteBuffer in;                  // plaintext received, not parsed yet (write mode)
        ByteBuffer netIn, netOut;       // TLS records (write mode)
        final ArrayDeque<ByteBuffer> out = new ArrayDeque<>(); // plaintext to send
        final Parser parser = new Parser();
        boolean busy;                   // a request is with a worker (or its answer is being written)
        boolean closeAfterWrite, closed;
        int requests;                   // requests received on this connection
        long lastActive = System.nanoTime();

        Conn(Reactor reactor, SocketChannel ch) {
            this.reactor = reactor;
            this.listener = reactor.listener;
            this.ch = ch;
            int size = Math.max(1024, listener.io.bufferSize);
            if (listener.ssl != null) {
                tls = listener.ssl.createSSLEngine();
                tls.setUseClientMode(false);
                tls.setEnabledProtocols(listener.protocols);
                int packet = tls.getSession().getPacketBufferSize();
                netIn = ByteBuffer.allocate(packet);
                netOut = ByteBuffer.allocate(packet);
                size = Math.max(size, tls.getSession().getApplicationBufferSize());
            } else {
                tls = null;
            }
            in = ByteBuffer.allocate(size);
        }

        // ---- reading

        void read() throws IOException {
            lastActive = System.nanoTime();
            if (tls == null) {
                if (!in.hasRemaining()) in = grow(in);
                int n = ch.read(in);
                if (n < 0) { close(); return; }
                listener.counters.bytesIn.addAndGet(n);
            } else {
                if (!netIn.hasRemaining()) netIn = grow(netIn);
                int n = ch.read(netIn);
                if (n < 0) { close(); return; }
                listener.counters.bytesIn.addAndGet(n);
                if (!unwrap()) return;
            }
            process();
        }

        /** TLS records from netIn into `in`, driving the handshake; false when closed. */
        boolean unwrap() throws IOException {
            while (!closed) {
                SSLEngineResult.HandshakeStatus hs = tls.getHandshakeStatus();
                if (hs == SSLEngineResult.HandshakeStatus.NEED_TASK) {
                    for (Runnable t; (t = tls.getDelegatedTask()) != null; ) t.run();
                    continue;
                }
                if (hs == SSLEngineResult.HandshakeStatus.NEED_WRAP) {
                    wrapHandshake();
                    if (closed) return false;
                    if (netOut.position() > 0) return true; // the peer is slow to read: resume on OP_WRITE
                    continue;
                }
                netIn.flip();
                SSLEngineResult r;
                try {
                    r = tls.unwrap(netIn, in);
                } finally {
                    netIn.compact();
                }
                switch (r.getStatus()) {
                    case BUFFER_UNDERFLOW:
                        if (!netIn.hasRemaining()) netIn = grow(netIn);
                        return true; // wait for more bytes
                    case BUFFER_OVERFLOW:
                        in = grow(in);
                        continue;
                    case CLOSED:
                        close();
                        return false;
                    default:
                        if (r.bytesConsumed() == 0 && r.bytesProduced() == 0
                                && r.getHandshakeStatus() != SSLEngineResult.HandshakeStatus.NEED_TASK
                                && r.getHandshakeStatus() != SSLEngineResult.HandshakeStatus.NEED_WRAP) return true;
                }
            }
            return false;
        }

        void wrapHandshake() throws IOException {
            while (tls.getHandshakeStatus() == SSLEngineResult.HandshakeStatus.NEED_WRAP) {
                SSLEngineResult r = tls.wrap(EMPTY, netOut);
                if (r.getStatus() == SSLEngineResult.Status.BUFFER_OVERFLOW) {
                    if (!writeNet()) return;
                    if (netOut.position() == 0) netOut = grow(netOut);
                } else if (r.getStatus() == SSLEngineResult.Status.CLOSED) {
                    writeNet();
                    close();
                    return;
                }
                if (tls.getHandshakeStatus() == SSLEngineResult.HandshakeStatus.NEED_TASK) {
                    for (Runnable t; (t = tls.getDelegatedTask()) != null; ) t.run();
                }
            }
            writeNet();
        }

        static ByteBuffer grow(ByteBuffer b) {
            ByteBuffer bigger = ByteBuffer.allocate(b.capacity() * 2);
            b.flip();
            bigger.put(b);
            return bigger;
        }

        /** Parse what was received; a complete request goes to the worker pool. */
        void process() {
            if (busy || closed) return;
            in.flip();
            Parser.Result r;
            try {
                r = parser.feed(in);
            } catch (Parser.BadRequest e) {
                in.compact();
                listener.counters.faults.incrementAndGet();
                busy = true;
                writeError(e.code, e.getMessage());
                return;
            }
            in.compact();
            if (r == Parser.Result.CONTINUE) {
                queue(ByteBuffer.wrap("HTTP/1.1 100 Continue\r\n\r\n".getBytes(ISO_8859_1)));
                process();
                return;
            }
            if (r != Parser.Result.DONE) {
                if (in.position() >= MAX_HEAD && parser.inHead()) { // a head that never ends
                    busy = true;
                    writeError(431, "request head larger than " + MAX_HEAD + " bytes");
                }
                return;
            }
            URI uri;
            try {
                uri = new URI(parser.target);
            } catch (URISyntaxException e) {
                parser.reset();
                busy = true;
                writeError(400, "bad request target: " + e.getMessage());
                return;
            }
            Exchange ex = new Exchange(this, parser.method, uri, parser.version, parser.headers, parser.body());
            parser.reset();
            busy = true;
            requests++;
            listener.counters.received.incrementAndGet();
            key.interestOps(0); // no reading while the worker has it (no pipelining)
            try {
                listener.workers.execute(() -> work(ex));
            } catch (RejectedExecutionException e) {
                listener.counters.rejected.incrementAndGet();
                listener.onReject.run();
                ex.responseHeaders.put("Content-Type", EiNode.XML);
                ex.responseCode = 503;
                respond(ex, 503, EiNode.fault("soapenv:Server", "The pass-through worker pool is exhausted"), true);
            }
        }

        void work(Exchange ex) {
            try {
                listener.handler.handle(ex);
            } catch (Throwable t) {
                // the handler answers its own errors; this is the last resort
            } finally {
                if (ex.responseCode < 0) ex.send(500, EiNode.TEXT, EiNode.utf8("no answer\n"));
            }
        }

        void writeError(int code, String msg) {
            byte[] body = (msg + "\n").getBytes(ISO_8859_1);
            String head = "HTTP/1.1 " + code + " " + reason(code) + "\r\nContent-Type: text/plain\r\nContent-Length: "
                    + body.length + "\r\nConnection: close\r\n\r\n";
            closeAfterWrite = true;
            queue(ByteBuffer.wrap(head.getBytes(ISO_8859_1)));
            queue(ByteBuffer.wrap(body));
        }

        // ---- writing

        /** Called on a worker thread (or the reactor): serialize, and let the reactor write. */
        void respond(Exchange ex, int code, byte[] content, boolean close) {
            boolean keep = !close && ex.keepAlive() && !listener.draining;
            boolean head = ex.method.equals("HEAD");
            StringBuilder h = new StringBuilder(256).append(ex.version.equals("HTTP/1.0") ? "HTTP/1.0 " : "HTTP/1.1 ")
                    .append(code).append(' ').append(reason(code)).append("\r\n");
            for (Map.Entry<String, String> e : ex.responseHeaders.entrySet()) {
                h.append(e.getKey()).append(": ").append(e.getValue()).append("\r\n");
            }
            h.append("Content-Length: ").append(content.length).append("\r\n");
            if (!keep) h.append("Connection: close\r\n");
            else if (ex.version.equals("HTTP/1.0")) h.append("Connection: keep-alive\r\n");
            h.append("\r\n");
            byte[] top = h.toString().getBytes(ISO_8859_1);
            ByteBuffer buf = ByteBuffer.allocate(top.length + (head ? 0 : content.length));
            buf.put(top);
            if (!head) buf.put(content);
            buf.flip();
            Runnable write = () -> {
                listener.counters.sent.incrementAndGet();
                if (!keep) closeAfterWrite = true;
                queue(buf);
            };
            if (Thread.currentThread() == reactor.thread) write.run();
            else reactor.run(write);
        }

        void queue(ByteBuffer b) {
            if (closed) return;
            out.add(b);
            try {
                flush();
            } catch (IOException | RuntimeException e) {
                close();
            }
        }

        /** Write what is pending; when all is out, the answer is done: read the next request. */
        void flush() throws IOException {
            if (closed) return;
            lastActive = System.nanoTime();
            if (tls == null) {
                while (!out.isEmpty()) {
                    ByteBuffer b = out.peek();
                    int n = ch.write(b);
                    listener.counters.bytesOut.addAndGet(n);
                    if (b.hasRemaining()) break;
                    out.poll();
                }
            } else {
                if (tls.getHandshakeStatus() == SSLEngineResult.HandshakeStatus.NEED_WRAP) wrapHandshake();
                while (!closed && !out.isEmpty() && writeNet()) {
                    ByteBuffer b = out.peek();
                    if (!b.hasRemaining()) {
                        out.poll();
                        continue;
                    }
                    SSLEngineResult r = tls.wrap(b, netOut);
                    if (r.getStatus() == SSLEngineResult.Status.CLOSED) throw new IOException("TLS closed");
                    if (r.getStatus() == SSLEngineResult.Status.BUFFER_OVERFLOW && netOut.position() == 0) netOut = grow(netOut);
                }
                if (!closed) writeNet();
            }
            if (closed) return;
            boolean pending = !out.isEmpty() || (tls != null && netOut.position() > 0);
            if (pending) {
                key.interestOps(key.interestOps() | SelectionKey.OP_WRITE);
                return;
            }
            if (!busy) {
                key.interestOps(SelectionKey.OP_READ);
                return;
            }
            if (closeAfterWrite) {
                close();
                return;
            }
            busy = false;
            key.interestOps(SelectionKey.OP_READ);
            if (tls != null && netIn.position() > 0 && !unwrap()) return;
            process(); // a request that arrived with the last one
        }

        /** Write TLS records out; true when netOut is empty afterwards (else wait for OP_WRITE). */
        boolean writeNet() throws IOException {
            netOut.flip();
            boolean all;
            try {
                int n = ch.write(netOut);
                listener.counters.bytesOut.addAndGet(n);
                all = !netOut.hasRemaining();
            } finally {
                netOut.compact();
            }
            if (!all) key.interestOps(key.interestOps() | SelectionKey.OP_WRITE);
            return all;
        }

        /**
         * Nothing received and unanswered, nothing left to write. A connection that has carried no
         * request yet counts as quiescent only after FRESH_IDLE_NS: nginx sends right after connecting.
         */
        boolean quiescent(long now) {
            if (closed) return true;
            boolean idle = !busy && out.isEmpty() && in.position() == 0 && parser.inHead()
                    && (tls == null || (netOut.position() == 0 && netIn.position() == 0));
            return idle && (requests > 0 || now - lastActive > FRESH_IDLE_NS);
        }

        void close() {
            if (closed) return;
            closed = true;
            if (key != null) key.cancel();
            EiNode.closeQuietly(ch);
            listener.counters.active.decrementAndGet();
        }
    }

    // ------------------------------------------------------------------ HTTP/1.1 request parser

    /** An incremental HTTP/1.1 request parser: head, then a Content-Length or chunked body. */
    static final class Parser {
        enum Result { MORE, CONTINUE, DONE }
        enum State { HEAD, BODY, CHUNK_SIZE, CHUNK_DATA, CHUNK_END, TRAILER }

        @SuppressWarnings("serial")
        static final class BadRequest extends Exception {
            final int code;
            BadRequest(int code, String msg) { super(msg, null, false, false); this.code = code; }
        }

        State state = State.HEAD;
        String method, target, version;
        Headers headers;
        long remaining;
        byte[] bodyBytes = new byte[0];
        int bodyLen;
        int scanned; // bytes of the head already searched for its end
        boolean continueSent;

        boolean inHead() { return state == State.HEAD; }

        void reset() {
            state = State.HEAD;
            method = target = version = null;
            headers = null;
            bodyBytes = new byte[0];
            bodyLen = 0;
            scanned = 0;
            continueSent = false;
        }

        byte[] body() { return bodyLen == bodyBytes.length ? bodyBytes : Arrays.copyOf(bodyBytes, bodyLen); }

        void append(ByteBuffer b, int n) throws BadRequest {
            if (bodyLen + (long) n > MAX_BODY) throw new BadRequest(413, "body larger than " + MAX_BODY + " bytes");
            if (bodyLen + n > bodyBytes.length) bodyBytes = Arrays.copyOf(bodyBytes, Math.max(bodyLen + n, bodyBytes.length * 2));
            b.get(bodyBytes, bodyLen, n);
            bodyLen += n;
        }

        /** Consume from b (read mode); what it leaves is the next request's start. */
        Result feed(ByteBuffer b) throws BadRequest {
            while (true) {
                switch (state) {
                    case HEAD: {
                        int end = find(b, scanned, "\r\n\r\n");
                        if (end < 0) {
                            scanned = Math.max(0, b.remaining() - 3);
                            if (b.remaining() > MAX_HEAD) throw new BadRequest(431, "request head larger than " + MAX_HEAD + " bytes");
                            return Result.MORE;
                        }
                        byte[] head = new byte[end + 4];
                        b.get(head);
                        scanned = 0;
                        parseHead(new String(head, ISO_8859_1));
                        if (state == State.HEAD) return Result.DONE;
                        String expect = headers.getFirst("Expect");
                        if (expect != null && expect.equalsIgnoreCase("100-continue") && !continueSent && !b.hasRemaining()) {
                            continueSent = true;
                            return Result.CONTINUE;
                        }
                        continue;
                    }
                    case BODY: {
                        int n = (int) Math.min(remaining, b.remaining());
                        append(b, n);
                        remaining -= n;
                        if (remaining > 0) return Result.MORE;
                        state = State.HEAD;
                        return Result.DONE;
                    }
                    case CHUNK_SIZE: {
                        String line = line(b);
                        if (line == null) return Result.MORE;
                        int semi = line.indexOf(';');
                        String hex = (semi >= 0 ? line.substring(0, semi) : line).trim();
                        try {
                            remaining = Long.parseLong(hex, 16);
                        } catch (NumberFormatException e) {
                            throw new BadRequest(400, "bad chunk size '" + hex + "'");
                        }
                        if (remaining < 0 || remaining > MAX_BODY) throw new BadRequest(413, "chunk too large");
                        state = remaining == 0 ? State.TRAILER : State.CHUNK_DATA;
                        continue;
                    }
                    case CHUNK_DATA: {
                        int n = (int) Math.min(remaining, b.remaining());
                        append(b, n);
                        remaining -= n;
                        if (remaining > 0) return Result.MORE;
                        state = State.CHUNK_END;
                        continue;
                    }
                    case CHUNK_END: {
                        String line = line(b);
                        if (line == null) return Result.MORE;
                        if (!line.isEmpty()) throw new BadRequest(400, "chunk data longer than its size");
                        state = State.CHUNK_SIZE;
                        continue;
                    }
                    case TRAILER: {
                        String line = line(b);
                        if (line == null) return Result.MORE;
                        if (line.isEmpty()) {
                            state = State.HEAD;
                            return Result.DONE;
                        }
                        continue; // trailer fields are read and dropped
                    }
                    default: throw new IllegalStateException(String.valueOf(state));
                }
            }
        }

        void parseHead(String head) throws BadRequest {
            String[] lines = head.split("\r\n");
            int first = 0;
            while (first < lines.length && lines[first].isEmpty()) first++; // stray CRLFs before a request
            if (first == lines.length) throw new BadRequest(400, "empty request");
            String[] rl = lines[first].split(" ");
            if (rl.length != 3 || !rl[2].startsWith("HTTP/1.")) throw new BadRequest(400, "bad request line");
            method = rl[0];
            target = rl[1];
            version = rl[2].equals("HTTP/1.0") ? "HTTP/1.0" : "HTTP/1.1";
            headers = new Headers();
            String lastKey = null;
            for (int i = first + 1; i < lines.length; i++) {
                String l = lines[i];
                if (l.isEmpty()) continue;
                if ((l.charAt(0) == ' ' || l.charAt(0) == '\t') && lastKey != null) { // obsolete line folding
                    List<String> vs = headers.get(Headers.key(lastKey));
                    vs.set(vs.size() - 1, vs.get(vs.size() - 1) + " " + l.trim());
                    continue;
                }
                int colon = l.indexOf(':');
                if (colon <= 0) throw new BadRequest(400, "bad header line");
                lastKey = l.substring(0, colon).trim();
                headers.add(lastKey, l.substring(colon + 1).trim());
            }
            String te = headers.getFirst("Transfer-Encoding"), cl = headers.getFirst("Content-Length");
            if (te != null) {
                if (!te.toLowerCase(Locale.ROOT).endsWith("chunked")) throw new BadRequest(501, "transfer coding " + te + " not supported");
                state = State.CHUNK_SIZE;
            } else if (cl != null) {
                try {
                    remaining = Long.parseLong(cl.trim());
                } catch (NumberFormatException e) {
                    throw new BadRequest(400, "bad Content-Length");
                }
                if (remaining < 0) throw new BadRequest(400, "bad Content-Length");
                if (remaining > MAX_BODY) throw new BadRequest(413, "body larger than " + MAX_BODY + " bytes");
                state = remaining > 0 ? State.BODY : State.HEAD;
            } else {
                state = State.HEAD; // no body
            }
        }

        /** A CRLF-ended line (without it), consumed; null when not all here yet. */
        static String line(ByteBuffer b) throws BadRequest {
            int end = find(b, 0, "\r\n");
            if (end < 0) {
                if (b.remaining() > 8192) throw new BadRequest(400, "line too long");
                return null;
            }
            byte[] l = new byte[end];
            b.get(l);
            b.position(b.position() + 2);
            return new String(l, ISO_8859_1);
        }

        /** Offset (from b's position) of `what`, searching from `from`; -1 when absent. */
        static int find(ByteBuffer b, int from, String what) {
            int start = b.position(), limit = b.limit(), n = what.length();
            outer:
            for (int i = start + from; i + n <= limit; i++) {
                for (int j = 0; j < n; j++) if (b.get(i + j) != what.charAt(j)) continue outer;
                return i - start;
            }
            return -1;
        }
    }
}
