/*
 * eiperf testbed node: its remote JMX connector, started by the node itself as Carbon starts its
 * own from conf/carbon.xml (<Ports><JMX><RMIRegistryPort> 9999, <RMIServerPort> 11111, both
 * shifted by the port offset), not by the JDK's agent: the agent (any -Dcom.sun.management.*
 * flag) loads at VM init, before main, and was most of the node's start time on JDK 11.
 *
 * Clients use the URL Carbon logs:
 *   service:jmx:rmi://HOST:SERVER_PORT/jndi/rmi://HOST:REGISTRY_PORT/jmxrmi
 * Both ports are bound to HOST only (loopback in the loopback testbed). With a password file
 * the connector asks for a user and password, and the access file gives each user readonly or
 * readwrite, in the formats of the JDK agent's jmxremote.password and jmxremote.access files.
 * Public javax.management.remote API only.
 */

import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermission;
import java.rmi.NoSuchObjectException;
import java.rmi.registry.LocateRegistry;
import java.rmi.registry.Registry;
import java.rmi.server.RMIServerSocketFactory;
import java.rmi.server.UnicastRemoteObject;
import java.util.EnumSet;
import java.util.HashMap;
import java.util.Map;
import java.util.Set;
import javax.management.remote.JMXServiceURL;
import javax.management.remote.rmi.RMIConnectorServer;
import javax.management.remote.rmi.RMIJRMPServerImpl;

final class JmxConnector {
    static final String NAME = "jmxrmi"; // the name in the registry, as the JDK agent and Carbon bind it

    final String serviceUrl;
    private final Registry registry;
    private final RMIConnectorServer server;

    private JmxConnector(String serviceUrl, Registry registry, RMIConnectorServer server) {
        this.serviceUrl = serviceUrl;
        this.registry = registry;
        this.server = server;
    }

    /**
     * Export the platform MBean server on host:registryPort (RMI registry) and host:serverPort
     * (the connector). passwordFile null: no authentication. Throws IOException with a message
     * naming the port that could not be bound, or why a password/access file is refused.
     */
    static JmxConnector start(String host, int registryPort, int serverPort, Path passwordFile, Path accessFile)
            throws IOException {
        Map<String, Object> env = new HashMap<>();
        if (passwordFile != null) {
            checkPasswordFile(passwordFile);
            env.put("jmx.remote.x.password.file", passwordFile.toString());
            if (accessFile != null) {
                if (!Files.isReadable(accessFile)) throw new IOException("Access file not found or not readable: " + accessFile);
                env.put("jmx.remote.x.access.file", accessFile.toString());
            }
        }
        // The stubs handed to clients name this host (the agent's -Djava.rmi.server.hostname)
        if (System.getProperty("java.rmi.server.hostname") == null) System.setProperty("java.rmi.server.hostname", host);
        HostSocketFactory sockets = new HostSocketFactory(InetAddress.getByName(host));
        Registry registry;
        try {
            registry = LocateRegistry.createRegistry(registryPort, null, sockets);
        } catch (IOException e) {
            throw new IOException("port " + registryPort + " (JMX RMIRegistryPort) on " + host + " is not available (" + rootMessage(e) + ")", e);
        }
        RMIConnectorServer server;
        try {
            RMIJRMPServerImpl exported = new RMIJRMPServerImpl(serverPort, null, sockets, env);
            server = new RMIConnectorServer(new JMXServiceURL("service:jmx:rmi://" + host + ":" + serverPort), env,
                    exported, ManagementFactory.getPlatformMBeanServer());
            server.start();
            registry.bind(NAME, exported.toStub());
        } catch (Exception e) {
            unexport(registry);
            throw new IOException("port " + serverPort + " (JMX RMIServerPort) on " + host + " is not available (" + rootMessage(e) + ")", e);
        }
        return new JmxConnector("service:jmx:rmi://" + host + ":" + serverPort + "/jndi/rmi://" + host + ":" + registryPort + "/" + NAME,
                registry, server);
    }

    /** As the JDK agent: a password file others may read is refused (it holds the passwords in clear). */
    static void checkPasswordFile(Path file) throws IOException {
        if (!Files.isReadable(file)) throw new IOException("Password file not found or not readable: " + file);
        Set<PosixFilePermission> perms;
        try {
            perms = Files.getPosixFilePermissions(file);
        } catch (UnsupportedOperationException e) {
            return; // not a POSIX file system: nothing to check
        }
        EnumSet<PosixFilePermission> others = EnumSet.of(PosixFilePermission.GROUP_READ, PosixFilePermission.GROUP_WRITE,
                PosixFilePermission.OTHERS_READ, PosixFilePermission.OTHERS_WRITE);
        others.retainAll(perms);
        if (!others.isEmpty()) throw new IOException("Password file read access must be restricted: " + file);
    }

    /** Stop serving: open connections are closed, both ports freed. */
    void close() {
        try {
            server.stop();
        } catch (IOException ignored) { /* stopping anyway */ }
        unexport(registry);
    }

    static void unexport(Registry registry) {
        try {
            UnicastRemoteObject.unexportObject(registry, true);
        } catch (NoSuchObjectException ignored) { /* never exported */ }
    }

    static String rootMessage(Throwable e) {
        while (e.getCause() != null && e.getCause() != e) e = e.getCause();
        return String.valueOf(e.getMessage());
    }

    /** Server sockets bound to one address only; equal for the same address, so RMI may share a port. */
    static final class HostSocketFactory implements RMIServerSocketFactory {
        final InetAddress address;

        HostSocketFactory(InetAddress address) { this.address = address; }

        @Override
        public ServerSocket createServerSocket(int port) throws IOException {
            return new ServerSocket(port, 50, address);
        }

        @Override
        public boolean equals(Object o) {
            return o instanceof HostSocketFactory && ((HostSocketFactory) o).address.equals(address);
        }

        @Override
        public int hashCode() { return address.hashCode(); }
    }
}
