package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"
)

// schedLog reads slurmctld's log for when a job was submitted and when the
// scheduler allocated it, to the millisecond. Batch jobs are scheduled on
// slurmctld's own ticks (on this cluster about every 3 s), so sbatch to
// RUNNING waits anything from a few ms to 3 s depending on when in the
// cycle the job came: with 5 pairs that phase, not the adapter, decides
// create-to-ready. Minus this delay both sides are compared on what follows
// the allocation. Readable on the single-node cluster (the bench runs on
// the controller's machine); elsewhere the section goes without.
type schedLog struct {
	path   string
	params string // SchedulerParameters
}

// findSchedLog locates and opens slurmctld's log; why says why not.
func (b *slurmBench) findSchedLog(ctx context.Context) (l *schedLog, why string) {
	out, _, _, err := b.slurm(ctx, nil, "scontrol", "show", "config")
	if err != nil {
		return nil, err.Error()
	}
	path := configValue(out, "SlurmctldLogFile")
	if path == "" || path == "(null)" {
		return nil, "scontrol show config names no SlurmctldLogFile"
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err.Error()
	}
	f.Close()
	return &schedLog{path: path, params: configValue(out, "SchedulerParameters")}, ""
}

// configValue is KEY's value in `scontrol show config` ("KEY = VALUE").
func configValue(out, key string) string {
	for _, l := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(l, "=")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// mark is the log's current size: lines about a job submitted later are
// after it.
func (l *schedLog) mark() int64 {
	if l == nil {
		return 0
	}
	fi, err := os.Stat(l.path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// times are when slurmctld logged job id's submit RPC and its allocation,
// in the lines after from.
func (l *schedLog) times(id string, from int64) (submit, alloc time.Time, err error) {
	if l == nil {
		return submit, alloc, fmt.Errorf("no slurmctld log")
	}
	f, err := os.Open(l.path)
	if err != nil {
		return submit, alloc, err
	}
	defer f.Close()
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return submit, alloc, err
	}
	b, err := io.ReadAll(io.LimitReader(f, 16<<20))
	if err != nil {
		return submit, alloc, err
	}
	return schedTimes(string(b), id)
}

var (
	logStamp = regexp.MustCompile(`^\[(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})\] `)
	// Allocated by the main scheduler or by backfill.
	allocLine = regexp.MustCompile(`(sched: Allocate JobId=|_start_job: Started JobId=)(\d+) `)
	submitRPC = regexp.MustCompile(`_slurm_rpc_submit_batch_job: JobId=(\d+) `)
)

// logTimeLayout is slurmctld's timestamp, in the machine's time zone.
const logTimeLayout = "2006-01-02T15:04:05.000"

// schedTimes finds job id's submit and allocation lines in log text.
func schedTimes(log, id string) (submit, alloc time.Time, err error) {
	for _, l := range strings.Split(log, "\n") {
		m := logStamp.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		if s := submitRPC.FindStringSubmatch(l); s != nil && s[1] == id && submit.IsZero() {
			submit, _ = time.ParseInLocation(logTimeLayout, m[1], time.Local)
		}
		if a := allocLine.FindStringSubmatch(l); a != nil && a[2] == id && alloc.IsZero() {
			alloc, _ = time.ParseInLocation(logTimeLayout, m[1], time.Local)
		}
	}
	if submit.IsZero() || alloc.IsZero() {
		return submit, alloc, fmt.Errorf("slurmctld's log has no submit and allocation lines for job %s", id)
	}
	return submit, alloc, nil
}
