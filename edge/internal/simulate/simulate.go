package simulate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/smartmaint/smartmaint/models/eval"
)

// FaultMode says where faults come from.
type FaultMode string

// Fault modes.
const (
	FaultsSchedule FaultMode = "schedule" // Config.Schedule only
	FaultsRandom   FaultMode = "random"   // drawn from the seed, plus Config.Schedule
	FaultsNone     FaultMode = "none"
)

// DefaultTopic is the topic template of the example site config.
const DefaultTopic = "plant/{site}/{line}/{asset}/{sensor}"

// Config configures a simulation run.
type Config struct {
	// Broker is the MQTT broker URL, e.g. tcp://127.0.0.1:1883.
	Broker string
	// ClientID is the MQTT client id; a fixed id with a persistent
	// session lets paho resend unacknowledged QoS 1 messages after a
	// reconnect.
	ClientID string
	// Topic is the topic template with {site}, {line}, {asset} and
	// {sensor}; default DefaultTopic.
	Topic string
	// Fields are the JSON keys of a reading; default DefaultFields.
	Fields Fields
	Site   string
	Line   string
	// Assets is the number of pumps (7 sensors each).
	Assets int
	// Rate is samples per second per sensor.
	Rate float64
	// QoS is the MQTT QoS of every publish (0, 1 or 2).
	QoS byte
	// Duration bounds the run; 0 runs until ctx is done. The run publishes
	// exactly floor(Duration·Rate) samples per sensor (minus dropouts).
	Duration time.Duration
	// Start is the timestamp of the first sample; zero means now.
	Start time.Time
	// Seed makes the data and the random faults reproducible.
	Seed uint64
	// Faults selects the fault source; Schedule lists scheduled faults.
	Faults   FaultMode
	Schedule []FaultSpec
	// FaultEvery is the mean time between random faults of one asset
	// (after the first, which comes within 90 s).
	FaultEvery time.Duration
	// Window is the number of unacknowledged publishes in flight
	// (pipelining); 1 waits for each acknowledgement.
	Window int
	// Fast publishes as fast as the broker takes it instead of pacing
	// samples at Rate in real time. Timestamps are the same either way.
	Fast bool
	// Progress is the interval of progress lines on Progress output (0: none).
	Progress time.Duration
	// Drain bounds the wait for outstanding acknowledgements at the end.
	Drain time.Duration
}

func (c *Config) defaults() {
	if c.Topic == "" {
		c.Topic = DefaultTopic
	}
	if c.Fields == (Fields{}) {
		c.Fields = DefaultFields()
	}
	if c.Site == "" {
		c.Site = "riverside"
	}
	if c.Line == "" {
		c.Line = "line1"
	}
	if c.Faults == "" {
		c.Faults = FaultsRandom
	}
	if c.FaultEvery == 0 {
		c.FaultEvery = 15 * time.Minute
	}
	if c.Window == 0 {
		c.Window = 1000
	}
	if c.Drain == 0 {
		c.Drain = 30 * time.Second
	}
	if c.ClientID == "" {
		c.ClientID = fmt.Sprintf("sm-edge-simulate-%s-%d", c.Site, time.Now().UnixNano()%1e9)
	}
}

// Validate reports every problem with the config at once.
func (c *Config) Validate() error {
	var errs []error
	if c.Broker == "" {
		errs = append(errs, errors.New("broker: the broker URL is required"))
	}
	if c.Assets < 1 {
		errs = append(errs, fmt.Errorf("assets: %d, want at least 1", c.Assets))
	}
	if !(c.Rate > 0) || c.Rate > 1e6 || math.IsInf(c.Rate, 0) {
		errs = append(errs, fmt.Errorf("rate: %v Hz, want more than 0 and at most 1e6", c.Rate))
	}
	if c.QoS > 2 {
		errs = append(errs, fmt.Errorf("qos: %d, want 0, 1 or 2", c.QoS))
	}
	if c.Duration < 0 {
		errs = append(errs, fmt.Errorf("duration: %s is negative", c.Duration))
	}
	switch c.Faults {
	case FaultsSchedule, FaultsRandom, FaultsNone:
	default:
		errs = append(errs, fmt.Errorf("faults: %q, want schedule, random or none", c.Faults))
	}
	if c.Window < 1 {
		errs = append(errs, fmt.Errorf("window: %d, want at least 1", c.Window))
	}
	for _, k := range []string{"{asset}", "{sensor}"} {
		if !strings.Contains(c.Topic, k) {
			errs = append(errs, fmt.Errorf("topic: %q lacks %s, so sensors would share a topic", c.Topic, k))
		}
	}
	for _, k := range []string{c.Fields.Value, c.Fields.Timestamp, c.Fields.Quality} {
		if k == "" || strings.Contains(k, ".") {
			errs = append(errs, fmt.Errorf("fields: %q: want a top-level JSON key", k))
		}
	}
	for _, s := range []string{c.Site, c.Line} {
		if strings.ContainsAny(s, "/+#") {
			errs = append(errs, fmt.Errorf("site/line %q: must not contain / + or #", s))
		}
	}
	return errors.Join(errs...)
}

// Truth is one injected fault, as written to the ground-truth file.
type Truth struct {
	Site  string `json:"site"`
	Line  string `json:"line"`
	Asset string `json:"asset"`
	// Sensors are the affected sensor ids as the example config builds
	// them ({site}/{line}/{asset}/{sensor}).
	Sensors []string `json:"sensors"`
	Kind    string   `json:"kind"`
	// Anomalous is false for dropouts (missing data, not an anomaly).
	Anomalous bool `json:"anomalous"`
	// Start is the first faulty sample's timestamp; End the first after
	// the fault (exclusive). A fault cut short by the end of the run ends
	// at the first sample that was not published.
	Start     time.Time `json:"start"`
	End       time.Time `json:"end"`
	Magnitude float64   `json:"magnitude_sigma"`
}

// Summary is the outcome of a run.
type Summary struct {
	Sensors int `json:"sensors"`
	// Samples is the number of sample ticks (per sensor).
	Samples int64 `json:"samples"`
	// Published counts readings handed to the broker connection.
	Published int64 `json:"published"`
	// Acked counts publishes the broker acknowledged (QoS 1/2: PUBACK or
	// PUBCOMP received; QoS 0: written to the connection).
	Acked int64 `json:"acked"`
	// Failed counts publishes that ended in an error; Unacked those still
	// outstanding when the drain time ran out.
	Failed  int64 `json:"failed"`
	Unacked int64 `json:"unacked"`
	// Dropout counts samples withheld by dropout faults.
	Dropout int64 `json:"dropout"`
	// PerSensor is the number of published readings per sensor id.
	PerSensor map[string]int64 `json:"per_sensor"`
	// AckedPerSensor is the number of acknowledged readings per sensor id.
	AckedPerSensor map[string]int64 `json:"acked_per_sensor"`
	Faults         []Truth          `json:"faults"`
	Elapsed        time.Duration    `json:"elapsed_ns"`
}

type spec struct {
	asset eval.AssetSpec
}

type assetState struct {
	gen    *eval.Generator
	inj    *eval.Injector
	topics []string
	ids    []string
	faults []eval.Fault
}

type pending struct {
	tok     paho.Token
	sensor  int
	topic   string
	payload []byte
}

// maxRepublish bounds how often a publish that paho gave up on (the
// connection dropped before it could be written) is sent again, as a real
// gateway would. A duplicate is harmless: a reading is identified by its
// sensor and timestamp.
const maxRepublish = 5

// Simulator publishes a simulated plant.
type Simulator struct {
	cfg    Config
	format payloadFormat
	step   time.Duration
	t0     time.Time
	assets []assetState
	plan   []assetFault
	ticks  int64 // 0: unbounded

	published atomic.Int64
	acked     atomic.Int64
	failed    atomic.Int64
	dropout   atomic.Int64
	tick      atomic.Int64
	// countMu guards pubCount and abandoned: the publish loop may be
	// abandoned inside a paho call when the broker is gone at shutdown.
	countMu   sync.Mutex
	abandoned bool
	pubCount  []int64 // per global sensor index
	ackCount  []int64 // written by the acker goroutine
}

// New plans a run: asset specs, generators and faults, all from Seed.
func New(cfg Config) (*Simulator, error) {
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	step := time.Duration(float64(time.Second) / cfg.Rate)
	if step <= 0 {
		step = 1
	}
	t0 := cfg.Start
	if t0.IsZero() {
		t0 = time.Now()
	}
	t0 = t0.UTC().Truncate(time.Millisecond)
	s := &Simulator{cfg: cfg, format: newPayloadFormat(cfg.Fields), step: step, t0: t0}
	if cfg.Duration > 0 {
		s.ticks = int64(math.Floor(cfg.Duration.Seconds()*cfg.Rate + 1e-9))
	}
	// Independent streams: specs, clean signals, fault plan, fault noise.
	// Adding a fault never changes the clean signal.
	root := rand.New(rand.NewPCG(cfg.Seed, 0x5eed5eed))
	specRng := rand.New(rand.NewPCG(root.Uint64(), root.Uint64()))
	planRng := rand.New(rand.NewPCG(root.Uint64(), root.Uint64()))
	specs := make([]spec, cfg.Assets)
	for i := range specs {
		specs[i] = spec{asset: pumpSpec(AssetName(i), step, specRng)}
	}
	var plan []assetFault
	if cfg.Faults != FaultsNone {
		p, err := planSchedule(cfg.Schedule, cfg.Assets, step)
		if err != nil {
			return nil, err
		}
		plan = p
	}
	if cfg.Faults == FaultsRandom {
		plan = append(plan, planRandom(planRng, specs, cfg.Duration, cfg.FaultEvery, step)...)
	}
	s.plan = plan
	byAsset := make([][]eval.Fault, cfg.Assets)
	for _, f := range plan {
		byAsset[f.asset] = append(byAsset[f.asset], f.fault)
	}
	s.assets = make([]assetState, cfg.Assets)
	for i, sp := range specs {
		sigRng := rand.New(rand.NewPCG(root.Uint64(), root.Uint64()))
		injRng := rand.New(rand.NewPCG(root.Uint64(), root.Uint64()))
		a := &s.assets[i]
		a.gen = eval.NewGenerator(sp.asset, sigRng, t0)
		a.inj = eval.NewInjector(sp.asset, byAsset[i], injRng)
		a.faults = byAsset[i]
		for _, c := range sp.asset.Channels {
			a.topics = append(a.topics, expand(cfg.Topic, cfg.Site, cfg.Line, sp.asset.Name, c.Name))
			a.ids = append(a.ids, cfg.Site+"/"+cfg.Line+"/"+sp.asset.Name+"/"+c.Name)
		}
	}
	n := cfg.Assets * len(sensorNames)
	s.pubCount = make([]int64, n)
	s.ackCount = make([]int64, n)
	return s, nil
}

func expand(tmpl, site, line, asset, sensor string) string {
	return strings.NewReplacer("{site}", site, "{line}", line, "{asset}", asset, "{sensor}", sensor).Replace(tmpl)
}

// Topics returns every topic the run publishes to, in order.
func (s *Simulator) Topics() []string {
	var out []string
	for _, a := range s.assets {
		out = append(out, a.topics...)
	}
	return out
}

// SensorIDs returns every sensor id, in the order of Topics.
func (s *Simulator) SensorIDs() []string {
	var out []string
	for _, a := range s.assets {
		out = append(out, a.ids...)
	}
	return out
}

// Start is the timestamp of the first sample.
func (s *Simulator) Start() time.Time { return s.t0 }

// Step is the sample period.
func (s *Simulator) Step() time.Duration { return s.step }

// timeUnitMS reports whether timestamps are whole milliseconds.
func (s *Simulator) timeUnitMS() bool { return s.step%time.Millisecond == 0 }

// Fields are the top-level JSON keys of a published reading.
type Fields struct {
	Value, Timestamp, Quality string
}

// DefaultFields are the keys the example site config maps.
func DefaultFields() Fields { return Fields{Value: "v", Timestamp: "ts", Quality: "q"} }

// payloadFormat holds a reading's JSON around its two numbers.
type payloadFormat struct{ open, mid, close string }

func newPayloadFormat(f Fields) payloadFormat {
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	return payloadFormat{
		open:  "{" + q(f.Value) + ":",
		mid:   "," + q(f.Timestamp) + ":",
		close: "," + q(f.Quality) + `:"good"}`,
	}
}

func (p *payloadFormat) append(b []byte, v float64, ts time.Time, ms bool) []byte {
	b = append(b, p.open...)
	b = strconv.AppendFloat(b, math.Round(v*1e4)/1e4, 'f', -1, 64)
	b = append(b, p.mid...)
	if ms {
		b = strconv.AppendInt(b, ts.UnixMilli(), 10)
	} else {
		b = strconv.AppendInt(b, ts.UnixMicro(), 10)
	}
	return append(b, p.close...)
}

// AppendPayload appends the JSON reading the example site config decodes
// (value path v, timestamp ts as epoch ms or µs, quality q).
func AppendPayload(b []byte, v float64, ts time.Time, ms bool) []byte {
	p := payloadFormat{open: `{"v":`, mid: `,"ts":`, close: `,"q":"good"}`}
	return p.append(b, v, ts, ms)
}

// Run connects, publishes until the duration is reached or ctx is done,
// waits (up to Drain) for outstanding acknowledgements and returns the
// summary. progress receives a line every Progress interval.
func (s *Simulator) Run(ctx context.Context, progress io.Writer) (Summary, error) {
	opts := paho.NewClientOptions().
		AddBroker(s.cfg.Broker).
		SetClientID(s.cfg.ClientID).
		SetCleanSession(false).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).
		SetMaxReconnectInterval(5 * time.Second).
		SetOrderMatters(false).
		SetKeepAlive(30 * time.Second).
		// Publish waits this long for a connection that dropped to come
		// back before it gives up; after a timeout paho still resends the
		// message from its session store, so a long timeout keeps the
		// acknowledged count exact through broker restarts.
		SetWriteTimeout(time.Hour)
	client := paho.NewClient(opts)
	ct := client.Connect()
	select {
	case <-ct.Done():
		if err := ct.Error(); err != nil {
			return Summary{}, fmt.Errorf("connect to broker %s: %w", s.cfg.Broker, err)
		}
	case <-ctx.Done():
		client.Disconnect(0)
		return Summary{}, fmt.Errorf("connect to broker %s: %w", s.cfg.Broker, ctx.Err())
	}
	defer client.Disconnect(250)

	began := time.Now()
	window := make(chan pending, s.cfg.Window)
	var ackWG sync.WaitGroup
	ackWG.Add(1)
	drainCtx, cancelDrain := context.WithCancel(context.Background())
	defer cancelDrain()
	go func() {
		defer ackWG.Done()
		s.acker(drainCtx, client, window)
	}()

	stopProgress := make(chan struct{})
	var progWG sync.WaitGroup
	if progress != nil && s.cfg.Progress > 0 {
		progWG.Add(1)
		go func() {
			defer progWG.Done()
			s.progress(progress, began, stopProgress)
		}()
	}

	loopDone := make(chan error, 1)
	go func() { loopDone <- s.publishLoop(ctx, client, window, began) }()
	var err error
	select {
	case err = <-loopDone:
		close(window)
	case <-ctx.Done():
		select {
		case err = <-loopDone:
			close(window)
		case <-time.After(s.cfg.Drain):
			// Stuck in a publish while the broker is away: leave it.
			s.countMu.Lock()
			s.abandoned = true
			s.countMu.Unlock()
			cancelDrain()
		}
	}
	// Wait for outstanding acknowledgements, at most Drain.
	done := make(chan struct{})
	go func() { ackWG.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(s.cfg.Drain):
		cancelDrain()
		<-done
	}
	close(stopProgress)
	progWG.Wait()
	sum := s.summary(time.Since(began))
	return sum, err
}

func (s *Simulator) publishLoop(ctx context.Context, client paho.Client, window chan<- pending, began time.Time) error {
	ms := s.timeUnitMS()
	row := make([]float64, len(sensorNames))
	var buf []byte
	var timer *time.Timer
	for k := int64(0); s.ticks == 0 || k < s.ticks; k++ {
		if ctx.Err() != nil {
			return nil
		}
		if !s.cfg.Fast {
			due := began.Add(time.Duration(k) * s.step)
			if d := time.Until(due); d > 0 {
				if timer == nil {
					timer = time.NewTimer(d)
				} else {
					timer.Reset(d)
				}
				select {
				case <-ctx.Done():
					return nil
				case <-timer.C:
				}
			}
		}
		for ai := range s.assets {
			a := &s.assets[ai]
			ts := a.gen.Next(row)
			a.inj.Apply(int(k), row)
			for c, v := range row {
				gi := ai*len(sensorNames) + c
				if math.IsNaN(v) {
					s.dropout.Add(1)
					continue
				}
				buf = s.format.append(buf[:0], v, ts, ms)
				// paho keeps the payload slice until the publish is done.
				payload := append([]byte(nil), buf...)
				// Wait for the connection rather than queue into paho
				// while the broker is away.
				for !client.IsConnectionOpen() {
					select {
					case <-ctx.Done():
						return nil
					case <-time.After(10 * time.Millisecond):
					}
				}
				tok := client.Publish(a.topics[c], s.cfg.QoS, false, payload)
				s.countMu.Lock()
				if s.abandoned {
					s.countMu.Unlock()
					return nil
				}
				s.pubCount[gi]++
				s.published.Add(1)
				s.countMu.Unlock()
				select {
				case window <- pending{tok: tok, sensor: gi, topic: a.topics[c], payload: payload}:
				default:
					select {
					case window <- pending{tok: tok, sensor: gi, topic: a.topics[c], payload: payload}:
					case <-ctx.Done():
						// Stopping while the window is full (the broker
						// is away): this publish counts as unacknowledged.
						return nil
					}
				}
			}
		}
		s.tick.Store(k + 1)
	}
	return nil
}

// acker waits for each publish in order and counts the outcome.
func (s *Simulator) acker(ctx context.Context, client paho.Client, window <-chan pending) {
	for {
		var p pending
		select {
		case q, ok := <-window:
			if !ok {
				return
			}
			p = q
		case <-ctx.Done():
			s.sweep(window)
			return
		}
		select {
		case <-p.tok.Done():
		case <-ctx.Done():
			s.count(p)
			s.sweep(window)
			return
		}
		p = s.republish(ctx, client, p)
		s.count(p)
	}
}

// republish sends a failed publish again, waiting for the connection,
// until it succeeds, maxRepublish attempts are spent or ctx ends.
func (s *Simulator) republish(ctx context.Context, client paho.Client, p pending) pending {
	for attempt := 0; p.tok.Error() != nil && attempt < maxRepublish; attempt++ {
		for !client.IsConnectionOpen() {
			select {
			case <-ctx.Done():
				return p
			case <-time.After(10 * time.Millisecond):
			}
		}
		p.tok = client.Publish(p.topic, s.cfg.QoS, false, p.payload)
		select {
		case <-p.tok.Done():
		case <-ctx.Done():
			return p
		}
	}
	return p
}

// count records the outcome of a completed publish; one still pending
// counts as unacknowledged (Summary.Unacked).
func (s *Simulator) count(p pending) {
	select {
	case <-p.tok.Done():
	default:
		return
	}
	if p.tok.Error() != nil {
		s.failed.Add(1)
		return
	}
	s.ackCount[p.sensor]++
	s.acked.Add(1)
}

// sweep counts the publishes left in the window when the drain time is
// over, without waiting.
func (s *Simulator) sweep(window <-chan pending) {
	for {
		select {
		case p, ok := <-window:
			if !ok {
				return
			}
			s.count(p)
		default:
			return
		}
	}
}

func (s *Simulator) activeFaults(k int64) int {
	n := 0
	for _, a := range s.assets {
		for _, f := range a.faults {
			if int64(f.Start) <= k && k < int64(f.End()) {
				n++
			}
		}
	}
	return n
}

func (s *Simulator) progress(w io.Writer, began time.Time, stop <-chan struct{}) {
	t := time.NewTicker(s.cfg.Progress)
	defer t.Stop()
	lastN, lastT := int64(0), began
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			n := s.published.Load()
			rate := float64(n-lastN) / now.Sub(lastT).Seconds()
			lastN, lastT = n, now
			k := s.tick.Load()
			lag := now.Sub(began) - time.Duration(k)*s.step
			if s.cfg.Fast || lag < 0 {
				lag = 0
			}
			fmt.Fprintf(w, "simulate: %s published %d (%.0f msg/s), acked %d, failed %d, faults active %d, behind %s\n",
				now.Sub(began).Truncate(time.Second), n, rate, s.acked.Load(), s.failed.Load(), s.activeFaults(k), lag.Truncate(time.Millisecond))
		}
	}
}

func (s *Simulator) summary(elapsed time.Duration) Summary {
	s.countMu.Lock()
	defer s.countMu.Unlock()
	s.abandoned = true
	sum := Summary{
		Sensors:        len(s.pubCount),
		Samples:        s.tick.Load(),
		Published:      s.published.Load(),
		Acked:          s.acked.Load(),
		Failed:         s.failed.Load(),
		Dropout:        s.dropout.Load(),
		PerSensor:      map[string]int64{},
		AckedPerSensor: map[string]int64{},
		Elapsed:        elapsed,
	}
	sum.Unacked = sum.Published - sum.Acked - sum.Failed
	ids := s.SensorIDs()
	for i, id := range ids {
		sum.PerSensor[id] = s.pubCount[i]
		sum.AckedPerSensor[id] = s.ackCount[i]
	}
	sum.Faults = s.Truth(sum.Samples)
	return sum
}

// Truth returns the ground truth of the faults that started within the
// first samples ticks (all planned faults when samples < 0).
func (s *Simulator) Truth(samples int64) []Truth {
	var out []Truth
	for ai, a := range s.assets {
		for _, f := range a.faults {
			if samples >= 0 && int64(f.Start) >= samples {
				continue
			}
			end := int64(f.End())
			if samples >= 0 && end > samples {
				end = samples
			}
			t := Truth{
				Site: s.cfg.Site, Line: s.cfg.Line, Asset: AssetName(ai),
				Kind: f.Kind.String(), Anomalous: f.Kind.Anomalous(),
				Start:     s.t0.Add(time.Duration(f.Start) * s.step),
				End:       s.t0.Add(time.Duration(end) * s.step),
				Magnitude: f.Magnitude,
			}
			for _, c := range a.inj.Channels(f) {
				t.Sensors = append(t.Sensors, a.ids[c])
			}
			out = append(out, t)
		}
	}
	sortTruth(out)
	return out
}

func sortTruth(ts []Truth) {
	for i := 1; i < len(ts); i++ {
		for j := i; j > 0 && ts[j].Start.Before(ts[j-1].Start); j-- {
			ts[j], ts[j-1] = ts[j-1], ts[j]
		}
	}
}

// WriteTruth writes ground truth as JSON lines, or as CSV (one row per
// sensor: sensor,asset,kind,anomalous,start,end,magnitude_sigma) when csv
// is set.
func WriteTruth(w io.Writer, truth []Truth, csv bool) error {
	if csv {
		if _, err := io.WriteString(w, "sensor,asset,kind,anomalous,start,end,magnitude_sigma\n"); err != nil {
			return err
		}
		for _, t := range truth {
			for _, id := range t.Sensors {
				if _, err := fmt.Fprintf(w, "%s,%s,%s,%t,%s,%s,%s\n", id, t.Asset, t.Kind, t.Anomalous,
					t.Start.Format(time.RFC3339Nano), t.End.Format(time.RFC3339Nano), strconv.FormatFloat(t.Magnitude, 'g', 6, 64)); err != nil {
					return err
				}
			}
		}
		return nil
	}
	enc := json.NewEncoder(w)
	for _, t := range truth {
		if err := enc.Encode(t); err != nil {
			return err
		}
	}
	return nil
}
