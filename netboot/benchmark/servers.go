package benchmark

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Ports the peers listen on beside Onramp (Onramp keeps 69 and 8080).
const (
	OnrampHTTPPort = 8080
	NginxPort      = 8081
	TFTPDPort      = 6969
)

// startOnramp runs `onramp netboot --mode isolated` on the bridge, with a
// boot plan that sends UEFI machines to the rack kernel and initrd, and
// waits until HTTP answers (after its start-up probe for foreign servers).
func startOnramp(ctx context.Context, o *Options, n *Net, dir, ipxeDir, assets string) (*Proc, error) {
	data := filepath.Join(dir, "onramp-data")
	plan := filepath.Join(dir, "plan.json")
	spec := map[string]any{"uefi": map[string]any{
		"kind": "kernel", "kernel": "rack/vmlinuz", "initrd": "rack/initrd.img",
		"cmdline": []string{"talos.platform=metal", "console=ttyS0"},
	}}
	b, _ := json.Marshal(spec)
	if err := os.WriteFile(plan, b, 0o644); err != nil {
		return nil, err
	}
	p, err := StartProc("onramp", n.S, filepath.Join(dir, "onramp.log"), o.OnrampEnv,
		o.Onramp, "netboot", "--iface", n.Bridge, "--mode", "isolated", "--data", data,
		"--assets", assets, "--ipxe-dir", ipxeDir, "--plan", plan)
	if err != nil {
		return nil, err
	}
	url := fmt.Sprintf("http://%s:%d/boot/ipxe.efi", ServerIP, OnrampHTTPPort)
	if err := p.WaitReady(ctx, 30*time.Second, func(ctx context.Context) error {
		_, err := nsRun(ctx, n.S, "curl", "-fsS", "-o", "/dev/null", "--max-time", "2", url)
		return err
	}); err != nil {
		p.Stop(5 * time.Second)
		return nil, err
	}
	return p, nil
}

// startKea runs kea-dhcp4 (memfile, persisted, lfc-interval 0) serving the
// same subnet and pool as Onramp on the bridge.
func startKea(ctx context.Context, n *Net, dir string) (*Proc, error) {
	logf := filepath.Join(dir, "kea.log")
	conf := fmt.Sprintf(`{"Dhcp4": {
  "interfaces-config": {"interfaces": [%q], "dhcp-socket-type": "udp"},
  "lease-database": {"type": "memfile", "persist": true, "name": %q, "lfc-interval": 0},
  "valid-lifetime": 3600,
  "subnet4": [{"id": 1, "subnet": "10.77.0.0/16", "pools": [{"pool": "%s - %s"}]}],
  "loggers": [{"name": "kea-dhcp4", "output_options": [{"output": %q}], "severity": "INFO"}]
}}`, n.Bridge, filepath.Join(dir, "kea-leases4.csv"), PoolStart, PoolEnd, logf)
	cf := filepath.Join(dir, "kea.json")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	p, err := StartProc("kea-dhcp4", n.S, filepath.Join(dir, "kea.out"),
		[]string{"KEA_PIDFILE_DIR=" + dir, "KEA_LOCKFILE_DIR=" + dir}, "kea-dhcp4", "-c", cf)
	if err != nil {
		return nil, err
	}
	if err := p.WaitReady(ctx, 15*time.Second, func(context.Context) error {
		b, _ := os.ReadFile(logf)
		if strings.Contains(string(b), "DHCP4_STARTED") {
			return nil
		}
		return fmt.Errorf("no DHCP4_STARTED in %s", logf)
	}); err != nil {
		p.Stop(5 * time.Second)
		return nil, err
	}
	return p, nil
}

// startTFTPD runs tftpd-hpa in the foreground on ServerIP:TFTPDPort,
// chrooted to root (which must be world-readable: it drops to nobody).
func startTFTPD(ctx context.Context, n *Net, dir, root, probeFile string) (*Proc, error) {
	p, err := StartProc("in.tftpd", n.S, filepath.Join(dir, "tftpd.log"), nil,
		"in.tftpd", "-L", "-v", "-s", root, "-a", fmt.Sprintf("%s:%d", ServerIP, TFTPDPort))
	if err != nil {
		return nil, err
	}
	url := fmt.Sprintf("tftp://%s:%d/%s", ServerIP, TFTPDPort, probeFile)
	if err := p.WaitReady(ctx, 10*time.Second, func(ctx context.Context) error {
		_, err := nsRun(ctx, n.C, "curl", "-fsS", "-o", "/dev/null", "--max-time", "5", url)
		return err
	}); err != nil {
		p.Stop(5 * time.Second)
		return nil, err
	}
	return p, nil
}

// startNginx runs nginx with sendfile on, serving root on ServerIP:NginxPort,
// with every path (prefix, pid, logs, temp) under dir.
func startNginx(ctx context.Context, n *Net, dir, root, probePath string) (*Proc, error) {
	prefix := filepath.Join(dir, "nginx")
	if err := os.MkdirAll(filepath.Join(prefix, "logs"), 0o755); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf(`worker_processes auto;
pid %[1]s/nginx.pid;
error_log %[1]s/logs/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_timeout 30;
  client_body_temp_path %[1]s/tmp_body;
  proxy_temp_path %[1]s/tmp_proxy;
  fastcgi_temp_path %[1]s/tmp_fcgi;
  uwsgi_temp_path %[1]s/tmp_uwsgi;
  scgi_temp_path %[1]s/tmp_scgi;
  types { application/octet-stream bin img; }
  default_type application/octet-stream;
  server {
    listen %[2]s:%[3]d;
    location /assets/ { alias %[4]s/; }
  }
}
`, prefix, ServerIP, NginxPort, root)
	cf := filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	p, err := StartProc("nginx", n.S, filepath.Join(dir, "nginx.out"), nil,
		"nginx", "-p", prefix, "-c", cf, "-g", "daemon off; user root;")
	if err != nil {
		return nil, err
	}
	url := fmt.Sprintf("http://%s:%d/assets/%s", ServerIP, NginxPort, probePath)
	if err := p.WaitReady(ctx, 10*time.Second, func(ctx context.Context) error {
		_, err := nsRun(ctx, n.C, "curl", "-fsS", "-o", "/dev/null", "--max-time", "5", "-r", "0-0", url)
		return err
	}); err != nil {
		p.Stop(5 * time.Second)
		return nil, err
	}
	return p, nil
}
