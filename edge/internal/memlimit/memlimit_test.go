package memlimit

import (
	"os"
	"path/filepath"
	"testing"
)

func TestAuto(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		name   string
		cgroup int64
		want   int64
	}{
		{"no cgroup limit: none", 0, 0},
		{"90 % of memory.max", 100 * mib, 90 * mib},
		{"a small box", 64 * mib, 64 * mib * 9 / 10},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := Auto(c.cgroup); got != c.want {
				t.Errorf("Auto(%d) = %d, want %d", c.cgroup, got, c.want)
			}
		})
	}
}

func TestCgroupMax(t *testing.T) {
	for _, c := range []struct {
		name  string
		proc  string
		files map[string]string
		want  int64
	}{
		{"v2 with a limit", "0::/system.slice/sm-edge.service\n", map[string]string{"system.slice/sm-edge.service/memory.max": "134217728\n"}, 128 << 20},
		{"v2 without a limit", "0::/user.slice\n", map[string]string{"user.slice/memory.max": "max\n"}, 0},
		{"v2 container root", "0::/\n", map[string]string{"memory.max": "67108864\n"}, 64 << 20},
		{"v1 with a limit", "5:cpuacct,cpu:/x\n4:memory:/docker/abc\n", map[string]string{"memory/docker/abc/memory.limit_in_bytes": "268435456\n"}, 256 << 20},
		{"v1 unlimited", "4:memory:/\n", map[string]string{"memory/memory.limit_in_bytes": "9223372036854771712\n"}, 0},
		{"no cgroup file", "", nil, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			proc := filepath.Join(dir, "cgroup")
			root := filepath.Join(dir, "fs")
			if c.proc != "" {
				write(t, proc, c.proc)
			}
			for name, text := range c.files {
				write(t, filepath.Join(root, name), text)
			}
			if got := cgroupMax(proc, root); got != c.want {
				t.Errorf("cgroupMax = %d, want %d", got, c.want)
			}
		})
	}
}

func write(t *testing.T, path, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}
