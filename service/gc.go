package service

import (
	"fmt"
	"net/http"
	"sync"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/collect"
)

// closeParallel bounds gc's closes at once, as gym-host gc's.
const closeParallel = 8

// failedJSON is a sandbox gc could not close.
type failedJSON struct {
	ID        string `json:"id"`
	ErrorType string `json:"error_type"`
	Message   string `json:"message"`
}

// gc answers POST /v1/gc: it closes what gym-host gc closes (the same
// selection, provider/collect), or with dry_run names it.
func (s *Service) gc(w http.ResponseWriter, r *http.Request) {
	var req struct {
		DryRun    bool `json:"dry_run"`
		AllOwners bool `json:"all_owners"`
	}
	if err := readJSON(r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	ctx := r.Context()
	sts, err := s.p.List(ctx)
	skipped, err := splitSkipped(err)
	if err != nil && (ctx.Err() != nil || len(sts) == 0) {
		s.writeError(w, r, fmt.Errorf("gc: list sandboxes to collect: %w", err))
		return
	}
	if err != nil {
		// What could be listed is still collected, as gym-host gc does.
		s.logger.Warn("gc: listing was incomplete", "error", err)
	}
	victims := collect.Select(sts, s.opts.Now(), req.AllOwners)
	closed, failed := []string{}, []failedJSON{}
	if req.DryRun {
		for _, v := range victims {
			closed = append(closed, v.Status.ID)
		}
	} else {
		ok := make([]bool, len(victims))
		errs := make([]error, len(victims))
		var wg sync.WaitGroup
		sem := make(chan struct{}, closeParallel)
		for i, v := range victims {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				errs[i] = s.p.Close(ctx, v.Status.ID)
				ok[i] = errs[i] == nil
			}()
		}
		wg.Wait()
		if ctx.Err() != nil {
			s.writeError(w, r, fmt.Errorf("gc: %w", ctx.Err()))
			return
		}
		for i, v := range victims {
			if ok[i] {
				closed = append(closed, v.Status.ID)
				continue
			}
			failed = append(failed, failedJSON{ID: v.Status.ID, ErrorType: provider.ErrorTypeOf(errs[i]), Message: errs[i].Error()})
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"closed": closed, "failed": failed, "skipped": skipped})
}

// closeAll answers POST /v1/close_all.
func (s *Service) closeAll(w http.ResponseWriter, r *http.Request) {
	var req struct {
		AllOwners bool `json:"all_owners"`
	}
	if err := readJSON(r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	ids, err := s.p.CloseAll(r.Context(), provider.CloseAllOptions{AllOwners: req.AllOwners})
	skipped, err := splitSkipped(err)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("close all: %w", err))
		return
	}
	if ids == nil {
		ids = []string{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"closed": ids, "skipped": skipped})
}
