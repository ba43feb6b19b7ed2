package sim

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/api/security"
	"github.com/siderolabs/talos/pkg/machinery/constants"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// certHolder holds the API server certificate; a worker gets it from trustd after
// boot, so it can be empty for a while (TLS handshakes fail meanwhile).
type certHolder struct {
	mu   sync.Mutex
	cert *tls.Certificate
}

func (h *certHolder) set(c tls.Certificate) {
	h.mu.Lock()
	h.cert = &c
	h.mu.Unlock()
}

func (h *certHolder) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	h.mu.Lock()
	defer h.mu.Unlock()

	if h.cert == nil {
		return nil, errors.New("API certificate not issued yet (waiting for trustd)")
	}

	return h.cert, nil
}

// trustdService is the control plane's trustd: it signs a worker's CSR with the
// machine CA when the request carries the machine token (gRPC metadata "token"), as
// Talos' trustd on port 50001 does.
type trustdService struct {
	security.UnimplementedSecurityServiceServer

	s    *Sim
	inst *installedNode
}

func (t *trustdService) Certificate(ctx context.Context, req *security.CertificateRequest) (*security.CertificateResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	token := t.inst.cfg.Machine().Security().Token()

	got := md.Get("token")
	if len(got) != 1 || subtle.ConstantTimeCompare([]byte(got[0]), []byte(token)) != 1 {
		return nil, status.Error(codes.Unauthenticated, "invalid token")
	}

	block, _ := pem.Decode(req.GetCsr())
	if block == nil {
		return nil, status.Error(codes.InvalidArgument, "CSR is not PEM")
	}

	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err == nil {
		err = csr.CheckSignature()
	}

	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "bad CSR: %v", err)
	}

	ca := t.inst.cfg.Machine().Security().IssuingCA()

	caCert, caKey, err := caPair(ca.Crt, ca.Key)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}

	now := t.s.cfg.Clock()

	crt, err := issue(caCert, caKey, csr.PublicKey, &x509.Certificate{
		Subject:     pkix.Name{CommonName: csr.Subject.CommonName},
		NotBefore:   now.Add(-time.Hour),
		NotAfter:    now.Add(365 * 24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: csr.IPAddresses,
		DNSNames:    csr.DNSNames,
	})
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}

	return &security.CertificateResponse{Ca: ca.Crt, Crt: crt}, nil
}

// trustdEndpoints are where a worker asks for its certificate: Config.TrustdEndpoints,
// else the cluster endpoint's host on port 50001.
func (s *Sim) trustdEndpoints(inst *installedNode) []string {
	if len(s.cfg.TrustdEndpoints) > 0 {
		return s.cfg.TrustdEndpoints
	}

	if cc := inst.cfg.K8sClusterConfig(); cc != nil && cc.ClusterEndpoint() != nil {
		return []string{net.JoinHostPort(cc.ClusterEndpoint().Hostname(), fmt.Sprint(constants.TrustdPort))}
	}

	return nil
}

// fetchCertificate gets the worker's API certificate from trustd, retrying with
// backoff (bounded) until a control plane answers.
func (s *Sim) fetchCertificate(ctx context.Context, inst *installedNode) {
	backoff := 250 * time.Millisecond

	for attempt := 1; attempt <= 400; attempt++ {
		for _, ep := range s.trustdEndpoints(inst) {
			if err := s.fetchCertificateFrom(ctx, inst, ep); err != nil {
				s.log.Warn("trustd certificate request", "endpoint", ep, "attempt", attempt, "err", err)

				continue
			}

			s.log.Info("API certificate issued by trustd", "endpoint", ep)

			return
		}

		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}

		backoff = min(backoff*2, 10*time.Second)
	}
}

func (s *Sim) fetchCertificateFrom(ctx context.Context, inst *installedNode, endpoint string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()

	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(inst.marker.OSCACerts) {
		return errors.New("no machine CA certificate")
	}

	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13})))
	if err != nil {
		return fmt.Errorf("dial trustd: %w", err)
	}
	defer conn.Close() //nolint:errcheck

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate key: %w", err)
	}

	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:     pkix.Name{CommonName: "apid"},
		IPAddresses: s.cfg.CertIPs(),
		DNSNames:    inst.cfg.Machine().Security().CertSANs(),
	}, key)
	if err != nil {
		return fmt.Errorf("create CSR: %w", err)
	}

	ctx = metadata.AppendToOutgoingContext(ctx, "token", inst.cfg.Machine().Security().Token())

	resp, err := security.NewSecurityServiceClient(conn).Certificate(ctx, &security.CertificateRequest{
		Csr: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER}),
	})
	if err != nil {
		return fmt.Errorf("request certificate: %w", err)
	}

	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("marshal key: %w", err)
	}

	pair, err := tls.X509KeyPair(resp.GetCrt(), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		return fmt.Errorf("load issued certificate: %w", err)
	}

	if _, err = pair.Leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return fmt.Errorf("issued certificate does not chain to the machine CA: %w", err)
	}

	inst.certs.set(pair)

	return nil
}
