package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/smartmaint/smartmaint/edge/internal/simulate"
)

func newSimulateCmd(stdio IO) *cobra.Command {
	var (
		cfgFile   string
		fl        simulate.Config
		qos       int
		faults    string
		schedule  []string
		truthFile string
		start     string
		wait      bool
	)
	cmd := &cobra.Command{
		Use:   "simulate",
		Short: "Publish a simulated plant's sensor readings, with injected faults, to a broker",
		Long: `simulate acts as a plant's gateways: it publishes readings of N pumps (vib_x,
vib_y, vib_z, current_l1, pressure_discharge, flow, bearing_de_temp, all moved
by one load with day-shift and daily patterns) as JSON {"v","ts","q"} to
plant/{site}/{line}/{asset}/{sensor}, the layout the example site config maps.

Faults come at random from --seed (the first within 90 s, so a demo shows an
alert quickly) or from a schedule, each --fault given as
  ASSET[/SENSOR]:KIND@START[+DURATION][*MAGNITUDE]
with KIND spike, step, drift, stuck, noise_burst, bearing_wear or dropout and
MAGNITUDE in standard deviations of the sensor's normal variation.
Without --duration, random faults are planned for the first 24 hours.
--truth writes what was injected (JSON lines, or CSV for a .csv name).

--config takes a simulator config (YAML: the flags' settings and a schedule)
or an sm-edge site config, whose broker, first JSON topic pattern and field
names are then used, so the simulator publishes what that config maps.

Progress goes to stderr every few seconds; Ctrl-C stops cleanly. At the end a
JSON summary (published and acknowledged counts, in total and per sensor)
goes to stdout.`,
		Example: `  sm-edge simulate --broker tcp://127.0.0.1:1883
  sm-edge simulate --config /etc/sm-edge/edge.yaml --duration 10m
  sm-edge simulate --broker tcp://127.0.0.1:1883 --assets 50 --rate 10 --duration 10m --truth truth.jsonl
  sm-edge simulate --broker tcp://127.0.0.1:1883 --faults schedule --fault "pump3:bearing@2m+5m" --fault "pump1/flow:step@30s+1m"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			flags := cmd.Flags()
			// Faults stays empty unless --faults or the config file sets it.
			cfg := simulate.Config{Assets: fl.Assets, Rate: fl.Rate, QoS: byte(qos)}
			if cfgFile != "" {
				if err := simulate.LoadFile(cfgFile, &cfg); err != nil {
					return &ExitError{Code: 1, Err: err}
				}
			}
			if flags.Changed("broker") || cfg.Broker == "" {
				cfg.Broker = fl.Broker
			}
			for name, apply := range map[string]func(){
				"site":        func() { cfg.Site = fl.Site },
				"line":        func() { cfg.Line = fl.Line },
				"topic":       func() { cfg.Topic = fl.Topic },
				"assets":      func() { cfg.Assets = fl.Assets },
				"rate":        func() { cfg.Rate = fl.Rate },
				"qos":         func() { cfg.QoS = byte(qos) },
				"duration":    func() { cfg.Duration = fl.Duration },
				"seed":        func() { cfg.Seed = fl.Seed },
				"faults":      func() { cfg.Faults = simulate.FaultMode(faults) },
				"fault-every": func() { cfg.FaultEvery = fl.FaultEvery },
			} {
				if flags.Changed(name) {
					apply()
				}
			}
			if qos < 0 || qos > 2 {
				return fmt.Errorf("--qos %d: want 0, 1 or 2", qos)
			}
			for _, s := range schedule {
				f, err := simulate.ParseFault(s)
				if err != nil {
					return fmt.Errorf("--fault: %w", err)
				}
				cfg.Schedule = append(cfg.Schedule, f)
			}
			// A schedule alone means "only these faults".
			if cfg.Faults == "" {
				cfg.Faults = simulate.FaultsRandom
				if len(cfg.Schedule) > 0 {
					cfg.Faults = simulate.FaultsSchedule
				}
			}
			if start != "" {
				t, err := time.Parse(time.RFC3339Nano, start)
				if err != nil {
					return fmt.Errorf("--start %q: want RFC 3339, e.g. 2026-11-26T08:00:00Z", start)
				}
				cfg.Start = t
			}
			cfg.ClientID = fl.ClientID
			cfg.Window = fl.Window
			if wait {
				cfg.Window = 1
			}
			cfg.Fast = fl.Fast
			cfg.Progress = fl.Progress
			cfg.Drain = fl.Drain

			sim, err := simulate.New(cfg)
			if err != nil {
				return err
			}
			if truthFile != "" {
				// Fail before publishing if the truth file cannot be written.
				f, err := os.Create(truthFile)
				if err != nil {
					return fmt.Errorf("create truth file: %w", err)
				}
				f.Close()
			}
			fmt.Fprintf(stdio.Err, "simulate: %d sensors (%d assets) at %g Hz, QoS %d, to %s; first sample %s\n",
				len(sim.SensorIDs()), cfg.Assets, cfg.Rate, cfg.QoS, cfg.Broker, sim.Start().Format(time.RFC3339Nano))
			for _, t := range sim.Truth(-1) {
				if cfg.Duration > 0 || t.Start.Sub(sim.Start()) < time.Hour {
					fmt.Fprintf(stdio.Err, "simulate: fault planned: %s %s on %s at +%s for %s\n", t.Asset, t.Kind, strings.Join(t.Sensors, ","), t.Start.Sub(sim.Start()), t.End.Sub(t.Start))
				}
			}
			sum, runErr := sim.Run(cmd.Context(), stdio.Err)
			if truthFile != "" {
				if err := writeTruth(truthFile, sum.Faults); err != nil {
					return err
				}
			}
			ids := make([]string, 0, len(sum.PerSensor))
			for id := range sum.PerSensor {
				ids = append(ids, id)
			}
			sort.Strings(ids)
			lo, hi := int64(-1), int64(0)
			for _, id := range ids {
				n := sum.PerSensor[id]
				if lo < 0 || n < lo {
					lo = n
				}
				hi = max(hi, n)
			}
			fmt.Fprintf(stdio.Err, "simulate: done in %s: %d samples per sensor, published %d readings (%d sensors, %d–%d each, %d withheld by dropouts), acked %d, failed %d, unacked %d, faults injected %d\n",
				sum.Elapsed.Truncate(time.Millisecond), sum.Samples, sum.Published, sum.Sensors, lo, hi, sum.Dropout, sum.Acked, sum.Failed, sum.Unacked, len(sum.Faults))
			enc := json.NewEncoder(stdio.Out)
			if err := enc.Encode(sum); err != nil {
				return err
			}
			if runErr != nil {
				return runErr
			}
			if sum.Failed > 0 || sum.Unacked > 0 {
				return &ExitError{Code: 1, Err: fmt.Errorf("%d publishes failed and %d were not acknowledged", sum.Failed, sum.Unacked)}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfgFile, "config", "", "simulator config, or an sm-edge site config to publish what it maps (YAML); flags override it")
	f.StringVar(&fl.Broker, "broker", "tcp://127.0.0.1:1883", "MQTT broker URL")
	f.StringVar(&fl.ClientID, "client-id", "", "MQTT client id (default: generated)")
	f.StringVar(&fl.Site, "site", "riverside", "site name in topics and sensor ids")
	f.StringVar(&fl.Line, "line", "line1", "line name in topics and sensor ids")
	f.StringVar(&fl.Topic, "topic", simulate.DefaultTopic, "topic template")
	f.IntVar(&fl.Assets, "assets", 10, "number of pumps (7 sensors each)")
	f.Float64Var(&fl.Rate, "rate", 1, "samples per second per sensor")
	f.IntVar(&qos, "qos", 1, "MQTT QoS 0, 1 or 2")
	f.DurationVar(&fl.Duration, "duration", 0, "stop after this much simulated time (0: until Ctrl-C)")
	f.Uint64Var(&fl.Seed, "seed", 1, "random seed for signals and random faults")
	f.StringVar(&faults, "faults", "", "fault source: random (plus any --fault), schedule or none (default: schedule when faults are given, else random)")
	f.StringArrayVar(&schedule, "fault", nil, "scheduled fault ASSET[/SENSOR]:KIND@START[+DURATION][*MAGNITUDE] (repeatable)")
	f.DurationVar(&fl.FaultEvery, "fault-every", 15*time.Minute, "random faults: mean time between faults of one asset")
	f.StringVar(&truthFile, "truth", "", "write the ground truth of injected faults here (JSON lines; CSV for *.csv)")
	f.StringVar(&start, "start", "", "timestamp of the first sample, RFC 3339 (default now)")
	f.IntVar(&fl.Window, "window", 1000, "publishes in flight before waiting for acknowledgements")
	f.BoolVar(&wait, "wait", false, "wait for each acknowledgement before the next publish")
	f.BoolVar(&fl.Fast, "fast", false, "publish as fast as the broker accepts instead of in real time")
	f.DurationVar(&fl.Progress, "progress", 5*time.Second, "progress line interval on stderr (0: none)")
	f.DurationVar(&fl.Drain, "drain", 30*time.Second, "at the end, wait at most this long for acknowledgements")
	return cmd
}

func writeTruth(path string, truth []simulate.Truth) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".truth-*")
	if err != nil {
		return fmt.Errorf("write truth file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := simulate.WriteTruth(tmp, truth, strings.HasSuffix(strings.ToLower(path), ".csv")); err != nil {
		tmp.Close()
		return fmt.Errorf("write truth file %q: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write truth file %q: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write truth file %q: %w", path, err)
	}
	return nil
}
