package execlink

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// echoServer is a stand-in executor: it echoes each line back.
func echoServer(t *testing.T) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "exec.sock")
	ln, err := net.Listen("unix", sock)
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	return sock
}

func gateway(t *testing.T, clientPEM []byte) (*Gateway, []byte) {
	t.Helper()
	srv, srvPEM, err := ServerCert()
	require.NoError(t, err)
	cfg, err := ServerConfig(srv, clientPEM)
	require.NoError(t, err)
	g, err := Listen("127.0.0.1:0", unixTarget(echoServer(t)), cfg)
	require.NoError(t, err)
	go func() { _ = g.Serve() }()
	t.Cleanup(func() { g.Close() })
	return g, srvPEM
}

func roundTrip(t *testing.T, dial func(context.Context) (net.Conn, error)) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := dial(ctx)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		return "", err
	}
	return bufio.NewReader(c).ReadString('\n')
}

func TestOwnerReachesTheExecutor(t *testing.T) {
	state := t.TempDir()
	client, clientPEM, err := ClientCert(state)
	require.NoError(t, err)
	g, srvPEM := gateway(t, clientPEM)
	cfg, err := ClientConfig(client, srvPEM)
	require.NoError(t, err)
	got, err := roundTrip(t, Dialer(net.JoinHostPort("127.0.0.1", itoa(g.Port())), cfg))
	require.NoError(t, err)
	assert.Equal(t, "ping\n", got)
}

func TestClientKeyIsPrivateAndReused(t *testing.T) {
	state := t.TempDir()
	_, pem1, err := ClientCert(state)
	require.NoError(t, err)
	_, pem2, err := ClientCert(state)
	require.NoError(t, err)
	assert.Equal(t, pem1, pem2, "a second call must reuse the key, or holders started earlier refuse the plugin")
	st, err := os.Stat(Dir(state))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), st.Mode().Perm())
	st, err = os.Stat(filepath.Join(Dir(state), "client.key"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())
}

func TestAnotherKeyIsRefused(t *testing.T) {
	_, ownerPEM, err := ClientCert(t.TempDir())
	require.NoError(t, err)
	g, srvPEM := gateway(t, ownerPEM)
	// Another user (another state dir) with the holder's public
	// certificate in hand: it completes no exchange with the executor.
	other, _, err := ClientCert(t.TempDir())
	require.NoError(t, err)
	cfg, err := ClientConfig(other, srvPEM)
	require.NoError(t, err)
	_, err = roundTrip(t, Dialer(net.JoinHostPort("127.0.0.1", itoa(g.Port())), cfg))
	assert.Error(t, err)
}

func TestAnotherServerIsRefused(t *testing.T) {
	client, clientPEM, err := ClientCert(t.TempDir())
	require.NoError(t, err)
	g, _ := gateway(t, clientPEM)
	// The plugin pins the certificate of the holder in the ready file: a
	// listener with any other key (something else bound the port) is not
	// the sandbox's holder.
	_, wrongPEM, err := ServerCert()
	require.NoError(t, err)
	cfg, err := ClientConfig(client, wrongPEM)
	require.NoError(t, err)
	_, err = roundTrip(t, Dialer(net.JoinHostPort("127.0.0.1", itoa(g.Port())), cfg))
	assert.Error(t, err)
}

func TestCloseCutsOpenConnections(t *testing.T) {
	client, clientPEM, err := ClientCert(t.TempDir())
	require.NoError(t, err)
	g, srvPEM := gateway(t, clientPEM)
	cfg, err := ClientConfig(client, srvPEM)
	require.NoError(t, err)
	c, err := Dialer(net.JoinHostPort("127.0.0.1", itoa(g.Port())), cfg)(context.Background())
	require.NoError(t, err)
	defer c.Close()
	_, err = io.WriteString(c, "x\n")
	require.NoError(t, err)
	_, err = bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err)

	require.NoError(t, g.Close())
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = c.Read(make([]byte, 1))
	assert.ErrorIs(t, err, io.EOF, "the holder's end must close the executor connections it carried")
}

func itoa(n int) string { return strconv.Itoa(n) }

func unixTarget(path string) func(context.Context) (net.Conn, error) {
	return func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}
}

func TestNoExecutorBehindTheHolderFailsTheDial(t *testing.T) {
	client, clientPEM, err := ClientCert(t.TempDir())
	require.NoError(t, err)
	srv, srvPEM, err := ServerCert()
	require.NoError(t, err)
	scfg, err := ServerConfig(srv, clientPEM)
	require.NoError(t, err)
	g, err := Listen("127.0.0.1:0", unixTarget(filepath.Join(t.TempDir(), "gone.sock")), scfg)
	require.NoError(t, err)
	go func() { _ = g.Serve() }()
	defer g.Close()
	cfg, err := ClientConfig(client, srvPEM)
	require.NoError(t, err)
	// The dial itself fails: the caller knows nothing was sent, so it may
	// run the command another way without losing its stdin.
	_, err = Dialer(net.JoinHostPort("127.0.0.1", itoa(g.Port())), cfg)(context.Background())
	assert.ErrorContains(t, err, "could not reach the executor")
}

// A client with a session cache resumes its TLS session with the same
// holder (fewer signatures per exec), and the holder still lets in only
// the owner: resumption needs a ticket from a verified handshake.
func TestSessionsResume(t *testing.T) {
	client, clientPEM, err := ClientCert(t.TempDir())
	require.NoError(t, err)
	g, srvPEM := gateway(t, clientPEM)
	cfg, err := ClientConfig(client, srvPEM)
	require.NoError(t, err)
	cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	dial := Dialer(net.JoinHostPort("127.0.0.1", itoa(g.Port())), cfg)
	var resumed []bool
	for i := 0; i < 3; i++ {
		c, err := dial(context.Background())
		require.NoError(t, err)
		_, err = io.WriteString(c, "x\n")
		require.NoError(t, err)
		_, err = bufio.NewReader(c).ReadString('\n')
		require.NoError(t, err)
		resumed = append(resumed, c.(*tls.Conn).ConnectionState().DidResume)
		c.Close()
	}
	assert.Equal(t, []bool{false, true, true}, resumed)
}

// Creates starting at once on a fresh state directory all get one pair,
// and the pair on disk is whole: without the lock, two writers' renames
// could leave one's key beside the other's certificate.
func TestClientKeyMadeOnceUnderConcurrency(t *testing.T) {
	for round := range 30 {
		state := t.TempDir()
		const n = 16
		pems := make(chan []byte, n)
		errs := make(chan error, n)
		start := make(chan struct{})
		for range n {
			go func() {
				<-start
				_, pem, err := ClientCert(state)
				pems <- pem
				errs <- err
			}()
		}
		close(start)
		var first []byte
		for range n {
			require.NoError(t, <-errs, "round %d", round)
			pem := <-pems
			if first == nil {
				first = pem
			}
			require.Equal(t, first, pem, "round %d: every caller gets the same certificate", round)
		}
		_, err := tls.LoadX509KeyPair(filepath.Join(Dir(state), "client.pem"), filepath.Join(Dir(state), "client.key"))
		require.NoError(t, err, "round %d: the pair on disk is whole", round)
	}
}

// A pair torn by an older build's race is replaced, not reported forever.
func TestTornClientKeyIsReplaced(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	_, _, err := ClientCert(a)
	require.NoError(t, err)
	_, _, err = ClientCert(b)
	require.NoError(t, err)
	key, err := os.ReadFile(filepath.Join(Dir(b), "client.key"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(Dir(a), "client.key"), key, 0o600))

	c, pem, err := ClientCert(a)
	require.NoError(t, err)
	assert.NotEmpty(t, c.Certificate)
	_, err = tls.LoadX509KeyPair(filepath.Join(Dir(a), "client.pem"), filepath.Join(Dir(a), "client.key"))
	require.NoError(t, err)
	_, pem2, err := ClientCert(a)
	require.NoError(t, err)
	assert.Equal(t, pem, pem2)
}
