package execlink

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gym-apptainer/gym-apptainer/internal/atomicfile"
	"github.com/gym-apptainer/gym-apptainer/internal/filelock"
)

// certLifetime: a client key lives as long as its state directory, and the
// pinning makes expiry meaningless for trust; a long lifetime only keeps
// Go's TLS from refusing an old certificate.
const certLifetime = 20 * 365 * 24 * time.Hour

// serverName is the name both sides use; trust comes from pinning, not
// from the name.
const serverName = "gym-executor-link"

// Dir is where a state directory's link key lives.
func Dir(stateDir string) string { return filepath.Join(stateDir, "tls") }

// ClientCert loads the state directory's client key pair, making it on
// first use. It returns the pair and the certificate's PEM, which is public
// and goes to every holder.
//
// The pair is two files, so making it is serialised by a lock file: two
// writers each renaming a key and then a certificate into place could
// otherwise leave one's key beside the other's certificate (8 creates at
// once on a fresh state directory did), a pair nobody can use. Reading
// takes no lock; a read that fails is done again under it.
func ClientCert(stateDir string) (tls.Certificate, []byte, error) {
	dir := Dir(stateDir)
	keyPath, certPath := filepath.Join(dir, "client.key"), filepath.Join(dir, "client.pem")
	if c, pemBytes, err := loadPair(certPath, keyPath); err == nil {
		return c, pemBytes, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("creating %s for the executor link key: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("making %s private: %w", dir, err)
	}
	unlock, err := filelock.Lock(filepath.Join(dir, ".lock"), false)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("locking %s to make the executor link key: %w", dir, err)
	}
	defer unlock()
	c, pemBytes, err := loadPair(certPath, keyPath)
	if err == nil {
		return c, pemBytes, nil // made meanwhile by another process
	}
	if !errors.Is(err, fs.ErrNotExist) && !isTornPair(err) {
		return tls.Certificate{}, nil, fmt.Errorf("reading the executor link key in %s: %w (remove the directory to make a new one)", dir, err)
	}
	// Missing, or torn by an older build's race: a new pair. Links of
	// running sandboxes pinned the old certificate; with a torn pair they
	// could not be used anyway.
	certPEM, keyPEM, err := newPair("gym-apptainer client")
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	if err := atomicfile.Write(keyPath, keyPEM); err != nil {
		return tls.Certificate{}, nil, err
	}
	if err := atomicfile.Write(certPath, certPEM); err != nil {
		return tls.Certificate{}, nil, err
	}
	c, pemBytes, err = loadPair(certPath, keyPath)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("reading back the executor link key in %s: %w", dir, err)
	}
	return c, pemBytes, nil
}

// isTornPair: a key and a certificate that are not one pair.
func isTornPair(err error) bool {
	return err != nil && strings.Contains(err.Error(), "private key does not match public key")
}

func loadPair(certPath, keyPath string) (tls.Certificate, []byte, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	return c, certPEM, nil
}

// ServerCert makes a fresh, in-memory key pair for one holder.
func ServerCert() (tls.Certificate, []byte, error) {
	certPEM, keyPEM, err := newPair(serverName)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("executor link server key: %w", err)
	}
	return c, certPEM, nil
}

// newPair makes a self-signed ECDSA P-256 certificate usable by both ends.
func newPair(cn string) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("making an executor link key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return nil, nil, fmt.Errorf("making an executor link key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     []string{serverName},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(certLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("making an executor link certificate: %w", err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("encoding an executor link key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), nil
}

// certDER is the DER of a PEM certificate, the form pinning compares.
func certDER(certPEM []byte) ([]byte, error) {
	b, _ := pem.Decode(certPEM)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, errors.New("not a PEM certificate")
	}
	if _, err := x509.ParseCertificate(b.Bytes); err != nil {
		return nil, err
	}
	return b.Bytes, nil
}

// pinned accepts a handshake only if the peer's leaf is exactly want.
func pinned(want []byte) func([][]byte, [][]*x509.Certificate) error {
	return func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 || !bytes.Equal(raw[0], want) {
			return errors.New("executor link: the peer's certificate is not the pinned one")
		}
		return nil
	}
}

// linkCurves is the key exchange of the link: X25519 alone. Go's default
// adds the hybrid post-quantum share (X25519MLKEM768), which made every
// handshake about 0.3 ms dearer on both ends (1.48 vs 1.07 ms per dial
// here, 1.08 vs 0.75 resumed). The link lives seconds, inside one cluster,
// between two pinned keys; a command pays that cost on every dial.
var linkCurves = []tls.CurveID{tls.X25519}

// ServerConfig is the holder's TLS: its own pair, and only the owner's
// client certificate accepted.
func ServerConfig(server tls.Certificate, clientPEM []byte) (*tls.Config, error) {
	want, err := certDER(clientPEM)
	if err != nil {
		return nil, fmt.Errorf("the executor link's client certificate: %w", err)
	}
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		CurvePreferences: linkCurves,
		Certificates:     []tls.Certificate{server},
		// Verified by pinning below; Go's chain verification would want a CA.
		ClientAuth:            tls.RequireAnyClientCert,
		VerifyPeerCertificate: pinned(want),
	}, nil
}

// ClientConfig is the plugin's TLS towards one holder, whose certificate
// came in its ready file.
func ClientConfig(client tls.Certificate, serverPEM []byte) (*tls.Config, error) {
	want, err := certDER(serverPEM)
	if err != nil {
		return nil, fmt.Errorf("the holder's executor link certificate: %w", err)
	}
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		CurvePreferences: linkCurves,
		Certificates:     []tls.Certificate{client},
		ServerName:       serverName,
		// Self-signed and pinned: the chain check is replaced, not skipped.
		InsecureSkipVerify:    true, //nolint:gosec // pinned in VerifyPeerCertificate
		VerifyPeerCertificate: pinned(want),
	}, nil
}
