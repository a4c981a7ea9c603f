// Package models holds the streaming anomaly detectors that sm-edge runs on
// every reading and that sm-collector trains: limit alarms, robust level and
// spread detectors, CUSUM change detection, stuck-value detection, PCA with
// Hotelling T² and SPE for one asset's sensors, and a default ensemble that
// needs no training and learns each sensor's normal behaviour online.
//
// Every detector consumes one reading at a time, costs O(1) or O(window) per
// reading and allocates nothing after construction. It returns a calibrated
// score in [0,1]: the detector's statistic is mapped through an estimate of
// its distribution under normal operation (see Tail) to a tail probability p,
// and the score is -log10(p)/Decades, clipped to [0,1]. A score of 0.5 thus
// means "this reading is as extreme as one normal reading in 10^5"; the
// decision threshold of every detector is expressed on that scale, so scores
// of different detectors are comparable and can be combined.
//
// Online detectors score 0 during a warm-up (DefaultWarmup readings for the
// level, spike and stuck detectors; SpreadConfig.Warmup plus 600 learnt
// ratios for the spread detector) rather than judge a sensor from a
// baseline of a few readings: a median and MAD of eight readings made every
// freshly started edge raise a storm of false alarms. The level detector
// then calibrates for MADConfig.MinTail (300) more readings, reporting only
// near-certain scores, because a short window's z-scores on a slow, smooth
// signal are far wider than the normal prior of its calibration says.
//
// The package is pure Go with no I/O beyond readers and writers; it imports
// nothing from edge/ or collector/.
package models
