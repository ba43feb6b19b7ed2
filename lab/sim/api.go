package sim

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	goruntime "runtime"
	"slices"
	"strings"
	"time"

	cosiapi "github.com/cosi-project/runtime/api/v1alpha1"
	cosiserver "github.com/cosi-project/runtime/pkg/state/protobuf/server"
	"github.com/siderolabs/talos/pkg/machinery/api/common"
	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Talos API roles carried in the Organization of client certificates
// (talosctl's talosconfig has os:admin).
const (
	roleAdmin    = "os:admin"
	rolePrefix   = "os:"
	methodPrefix = "/machine.MachineService/"
)

// adminMethods need os:admin; every other call needs any os: role.
var adminMethods = []string{"ApplyConfiguration", "Bootstrap", "Kubeconfig"}

func (s *Sim) grpcServer(creds *tls.Config, installed bool) *grpc.Server {
	opts := []grpc.ServerOption{grpc.Creds(credentials.NewTLS(creds))}

	if installed {
		opts = append(opts,
			grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
				if err := authorize(ctx, info.FullMethod); err != nil {
					return nil, err
				}

				return h(ctx, req)
			}),
			grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
				if err := authorize(ss.Context(), info.FullMethod); err != nil {
					return err
				}

				return h(srv, ss)
			}),
		)
	}

	srv := grpc.NewServer(opts...)

	s.mu.Lock()
	st := s.st
	s.mu.Unlock()

	machine.RegisterMachineServiceServer(srv, &machineService{s: s, installed: installed})
	cosiapi.RegisterStateServer(srv, cosiserver.NewState(readOnly{st}))

	return srv
}

// authorize checks the Talos role in the verified client certificate.
func authorize(ctx context.Context, method string) error {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return status.Error(codes.Unauthenticated, "no peer")
	}

	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return status.Error(codes.Unauthenticated, "no verified client certificate")
	}

	orgs := ti.State.VerifiedChains[0][0].Subject.Organization

	if slices.Contains(adminMethods, strings.TrimPrefix(method, methodPrefix)) && strings.HasPrefix(method, methodPrefix) {
		if !slices.Contains(orgs, roleAdmin) {
			return status.Errorf(codes.PermissionDenied, "not authorized: %s requires role %s", method, roleAdmin)
		}

		return nil
	}

	if !slices.ContainsFunc(orgs, func(o string) bool { return strings.HasPrefix(o, rolePrefix) }) {
		return status.Error(codes.PermissionDenied, "not authorized: no Talos role in client certificate")
	}

	return nil
}

type machineService struct {
	machine.UnimplementedMachineServiceServer

	s         *Sim
	installed bool
}

func (m *machineService) Version(context.Context, *emptypb.Empty) (*machine.VersionResponse, error) {
	return &machine.VersionResponse{Messages: []*machine.Version{{
		Version: &machine.VersionInfo{
			Tag:       m.s.cfg.TalosVersion,
			Sha:       "talossim",
			GoVersion: goruntime.Version(),
			Os:        goruntime.GOOS,
			Arch:      goruntime.GOARCH,
		},
		Platform: &machine.PlatformInfo{Name: "metal", Mode: "metal"},
		Features: &machine.FeaturesInfo{Rbac: true},
	}}}, nil
}

func (m *machineService) ApplyConfiguration(_ context.Context, req *machine.ApplyConfigurationRequest) (*machine.ApplyConfigurationResponse, error) {
	if m.installed {
		return nil, status.Error(codes.Unimplemented, "the simulator applies configuration in maintenance mode only")
	}

	if req.GetDryRun() {
		return nil, status.Error(codes.Unimplemented, "dry run is not supported in maintenance mode")
	}

	if err := m.s.install(req.GetData()); err != nil {
		var ae *ApplyError
		if errors.As(err, &ae) {
			code := codes.FailedPrecondition
			if ae.Invalid {
				code = codes.InvalidArgument
			}

			return nil, status.Error(code, ae.Error())
		}

		return nil, status.Error(codes.Internal, err.Error())
	}

	m.s.requestReboot()

	return &machine.ApplyConfigurationResponse{Messages: []*machine.ApplyConfiguration{{
		Mode:        machine.ApplyConfigurationRequest_REBOOT,
		ModeDetails: "Applied configuration: installing, the node reboots into installed mode",
	}}}, nil
}

func (m *machineService) inst() (*installedNode, error) {
	m.s.mu.Lock()
	inst := m.s.inst
	m.s.mu.Unlock()

	if !m.installed || inst == nil {
		return nil, status.Error(codes.Unimplemented, "not available in maintenance mode")
	}

	return inst, nil
}

func (m *machineService) Bootstrap(context.Context, *machine.BootstrapRequest) (*machine.BootstrapResponse, error) {
	inst, err := m.inst()
	if err != nil {
		return nil, err
	}

	m.s.mu.Lock()
	defer m.s.mu.Unlock()

	if inst.marker.MachineType != "controlplane" {
		return nil, status.Error(codes.FailedPrecondition, "bootstrap can only be performed on a control plane node")
	}

	if inst.stateErr != nil {
		return nil, status.Error(codes.FailedPrecondition, inst.stateErr.Error())
	}

	if inst.marker.Bootstrapped {
		// Talos' words when etcd already holds data
		return nil, status.Error(codes.AlreadyExists, "etcd data directory is not empty")
	}

	inst.marker.Bootstrapped = true
	if err := writeJSON(m.s.cfg.StateDir, markerFile, inst.marker); err != nil {
		inst.marker.Bootstrapped = false

		return nil, status.Error(codes.Internal, err.Error())
	}

	inst.bootstrapped = m.s.cfg.Clock()
	m.s.log.Info("bootstrapped etcd")

	// etcd starts, and turns healthy EtcdStartDelay later (as ServiceList says)
	m.s.publish(&machine.ServiceStateEvent{Service: "etcd", Action: machine.ServiceStateEvent_STARTING, Message: "Starting etcd", Health: &machine.ServiceHealth{Unknown: true}})
	time.AfterFunc(m.s.cfg.EtcdStartDelay, m.s.publishEtcdRunning)

	return &machine.BootstrapResponse{Messages: []*machine.Bootstrap{{}}}, nil
}

func svc(id, state string, healthy, unknown bool, msg string) *machine.ServiceInfo {
	return &machine.ServiceInfo{
		Id:     id,
		State:  state,
		Health: &machine.ServiceHealth{Healthy: healthy, Unknown: unknown, LastMessage: msg},
		Events: &machine.ServiceEvents{},
	}
}

// ServiceList reports the services Onramp waits on: etcd (control plane) goes
// Preparing → Running, healthy EtcdStartDelay after bootstrap (or after boot once
// bootstrapped); kubelet turns healthy with etcd on a control plane.
func (m *machineService) ServiceList(context.Context, *emptypb.Empty) (*machine.ServiceListResponse, error) {
	inst, err := m.inst()
	if err != nil {
		return nil, err
	}

	now := m.s.cfg.Clock()

	m.s.mu.Lock()
	defer m.s.mu.Unlock()

	list := []*machine.ServiceInfo{
		svc("apid", "Running", true, false, ""),
		svc("machined", "Running", true, false, ""),
		svc("containerd", "Running", true, false, ""),
		svc("cri", "Running", true, false, ""),
		svc("trustd", "Running", true, false, ""),
	}

	if inst.stateErr != nil {
		list = append(list, svc("kubelet", "Failed", false, false, inst.stateErr.Error()))

		return &machine.ServiceListResponse{Messages: []*machine.ServiceList{{Services: list}}}, nil
	}

	if inst.marker.MachineType != "controlplane" {
		list = append(list, svc("kubelet", "Running", true, false, ""))

		return &machine.ServiceListResponse{Messages: []*machine.ServiceList{{Services: list}}}, nil
	}

	since := inst.bootstrapped
	if since.IsZero() && inst.marker.Bootstrapped {
		since = inst.bootedAt
	}

	switch {
	case !inst.marker.Bootstrapped:
		list = append(list,
			svc("etcd", "Preparing", false, true, "waiting for bootstrap"),
			svc("kubelet", "Running", false, false, "waiting for the API server"))
	case now.Sub(since) < m.s.cfg.EtcdStartDelay:
		list = append(list,
			svc("etcd", "Running", false, true, "starting"),
			svc("kubelet", "Running", false, false, "waiting for the API server"))
	default:
		list = append(list,
			svc("etcd", "Running", true, false, ""),
			svc("kubelet", "Running", true, false, ""))
	}

	for _, l := range list {
		l.Events.Events = []*machine.ServiceEvent{{Msg: l.Health.LastMessage, State: l.State, Ts: timestamppb.New(now)}}
	}

	return &machine.ServiceListResponse{Messages: []*machine.ServiceList{{Services: list}}}, nil
}

// Kubeconfig streams a tar.gz holding one file, "kubeconfig", as Talos does.
func (m *machineService) Kubeconfig(_ *emptypb.Empty, srv grpc.ServerStreamingServer[common.Data]) error {
	inst, err := m.inst()
	if err != nil {
		return err
	}

	m.s.mu.Lock()
	bootstrapped := inst.marker.Bootstrapped
	m.s.mu.Unlock()

	switch {
	case inst.stateErr != nil:
		return status.Error(codes.FailedPrecondition, inst.stateErr.Error())
	case inst.marker.MachineType != "controlplane":
		return status.Error(codes.FailedPrecondition, "kubeconfig is only available on control plane nodes")
	case !bootstrapped:
		return status.Error(codes.FailedPrecondition, "kubeconfig is available after bootstrap")
	}

	ca := inst.cfg.K8sAPIServerCAConfig().IssuingCA()
	cc := inst.cfg.K8sClusterConfig()

	if ca == nil || cc == nil || cc.ClusterEndpoint() == nil {
		return status.Error(codes.FailedPrecondition, "config has no Kubernetes CA or endpoint")
	}

	kc, err := adminKubeconfig(m.s.cfg.Clock(), cc.ClusterName(), cc.ClusterEndpoint().String(), ca.Crt, ca.Key)
	if err != nil {
		return status.Error(codes.Internal, err.Error())
	}

	var buf bytes.Buffer

	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)

	if err = tw.WriteHeader(&tar.Header{Name: "kubeconfig", Mode: 0o600, Size: int64(len(kc)), Typeflag: tar.TypeReg}); err == nil {
		_, err = tw.Write(kc)
	}

	if err == nil {
		err = tw.Close()
	}

	if err == nil {
		err = gz.Close()
	}

	if err != nil {
		return status.Error(codes.Internal, fmt.Sprintf("pack kubeconfig: %v", err))
	}

	return srv.Send(&common.Data{Bytes: buf.Bytes()})
}
