package deploytest

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/smartmaint/smartmaint/shared/testenv"
)

// TestShippedConfigsLoad runs the configurations shipped for compose and
// Kubernetes through the programs themselves: `sm-edge config validate`
// for the edge, and `sm-collector migrate --config` (which loads and
// validates the whole file) for both collector configurations.
func TestShippedConfigsLoad(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	dbURL := testenv.Postgres(t)
	edgeBin, collBin := buildBinaries(t, root)

	testenv.RunProgram(t, edgeBin, nil, "config", "validate", "--config", filepath.Join(root, "deploy", "container", "edge.yaml"))

	var cm struct {
		Kind string            `yaml:"kind"`
		Data map[string]string `yaml:"data"`
	}
	readYAML(t, filepath.Join(root, "deploy", "kubernetes", "configmap.yaml"), &cm)
	k8sCfg := filepath.Join(t.TempDir(), "collector.yaml")
	writeFile(t, k8sCfg, cm.Data["collector.yaml"])
	env := []string{"DATABASE_URL=" + dbURL}
	for _, cfg := range []string{filepath.Join(root, "deploy", "container", "collector.yaml"), k8sCfg} {
		testenv.RunProgram(t, collBin, env, "migrate", "--config", cfg)
	}
}

// TestMosquittoNoDrop keeps the compose broker set up not to discard
// queued QoS 1 messages (see SERVICES.md: the defaults lose data).
func TestMosquittoNoDrop(t *testing.T) {
	t.Parallel()
	path := filepath.Join(repoRoot(t), "deploy", "container", "mosquitto.conf")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.Join(strings.Fields(l), " "); l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	for _, want := range []string{"max_queued_messages 0", "max_inflight_messages 0", "persistence true"} {
		if !slices.Contains(lines, want) {
			t.Errorf("%s: no line %q", path, want)
		}
	}
}

// TestKubernetesCollector checks the promises of the Kubernetes manifests:
// two replicas, probes on /readyz and /healthz, DATABASE_URL from a
// Secret (never inline), the migrate Job on the same image, non-root.
func TestKubernetesCollector(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(repoRoot(t), "deploy", "kubernetes")
	type container struct {
		Image string   `yaml:"image"`
		Args  []string `yaml:"args"`
		Env   []struct {
			Name      string `yaml:"name"`
			Value     string `yaml:"value"`
			ValueFrom *struct {
				SecretKeyRef *struct {
					Name string `yaml:"name"`
					Key  string `yaml:"key"`
				} `yaml:"secretKeyRef"`
			} `yaml:"valueFrom"`
		} `yaml:"env"`
		ReadinessProbe *struct {
			HTTPGet struct{ Path string } `yaml:"httpGet"`
		} `yaml:"readinessProbe"`
		LivenessProbe *struct {
			HTTPGet struct{ Path string } `yaml:"httpGet"`
		} `yaml:"livenessProbe"`
	}
	type podSpec struct {
		SecurityContext struct {
			RunAsNonRoot bool `yaml:"runAsNonRoot"`
		} `yaml:"securityContext"`
		Containers []container `yaml:"containers"`
	}
	var dep struct {
		Kind string `yaml:"kind"`
		Spec struct {
			Replicas int `yaml:"replicas"`
			Template struct {
				Spec podSpec `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	var job struct {
		Kind string `yaml:"kind"`
		Spec struct {
			Template struct {
				Spec podSpec `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	readYAML(t, filepath.Join(dir, "deployment.yaml"), &dep)
	readYAML(t, filepath.Join(dir, "migrate-job.yaml"), &job)
	if dep.Kind != "Deployment" || job.Kind != "Job" {
		t.Fatalf("kinds %q and %q, want Deployment and Job", dep.Kind, job.Kind)
	}
	if dep.Spec.Replicas != 2 {
		t.Errorf("deployment.yaml: replicas %d, want 2", dep.Spec.Replicas)
	}
	secretDB := func(where string, c container) {
		for _, e := range c.Env {
			if e.Name != "DATABASE_URL" {
				continue
			}
			if e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
				t.Errorf("%s: DATABASE_URL must come from a Secret (valueFrom.secretKeyRef)", where)
			}
			return
		}
		t.Errorf("%s: no DATABASE_URL", where)
	}
	for _, c := range []struct {
		where string
		spec  podSpec
	}{{"deployment.yaml", dep.Spec.Template.Spec}, {"migrate-job.yaml", job.Spec.Template.Spec}} {
		if !c.spec.SecurityContext.RunAsNonRoot {
			t.Errorf("%s: securityContext.runAsNonRoot is not true", c.where)
		}
		if len(c.spec.Containers) != 1 {
			t.Fatalf("%s: %d containers, want 1", c.where, len(c.spec.Containers))
		}
		secretDB(c.where, c.spec.Containers[0])
	}
	srv, mig := dep.Spec.Template.Spec.Containers[0], job.Spec.Template.Spec.Containers[0]
	if srv.ReadinessProbe == nil || srv.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("deployment.yaml: readiness probe is not GET /readyz")
	}
	if srv.LivenessProbe == nil || srv.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("deployment.yaml: liveness probe is not GET /healthz")
	}
	if mig.Image != srv.Image || len(mig.Args) == 0 || mig.Args[0] != "migrate" {
		t.Errorf("migrate-job.yaml: image %q args %q, want the Deployment's image %q running migrate", mig.Image, mig.Args, srv.Image)
	}
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
