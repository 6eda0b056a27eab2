package apptainer

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sync/singleflight"

	"github.com/gym-apptainer/gym-apptainer/internal/ansi"
	"github.com/gym-apptainer/gym-apptainer/internal/syncbuf"
	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/handles"
)

// The user of an exec. Apptainer has no per-exec user switch for an instance
// (--fakeroot on exec is ignored when joining one), so:
//   - ""         runs as whoever a plain exec is (the sandbox's default uid);
//   - root / 0   is only honoured when that default uid is 0: never silently
//     run as someone else than asked;
//   - any other  runs through su, which needs root inside and an image that
//     knows the user; a preflight proves both once per sandbox and user.

// userCheckFallback bounds the checks when probe.timeout_s is unset.
const userCheckFallback = 30 * time.Second

// fakerootHint is how to get root inside a sandbox.
const fakerootHint = `start sandboxes with --fakeroot (create.extra_start_args: ["--fakeroot"]; ` +
	`it needs an /etc/subuid and /etc/subgid range for the launching user) or, when the plugin runs as root ` +
	`on the host, with --userns (create.extra_start_args: ["--userns"])`

// userState caches what the user checks learned, per process. Its zero
// value is ready.
type userState struct {
	mu      sync.Mutex
	suOK    map[string]bool // sandbox id + "\x00" + user: su preflight passed
	flights singleflight.Group
}

func suKey(id, user string) string { return id + "\x00" + user }

func (u *userState) passed(id, user string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.suOK[suKey(id, user)]
}

func (u *userState) pass(id, user string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.suOK == nil {
		u.suOK = map[string]bool{}
	}
	u.suOK[suKey(id, user)] = true
}

// forgetUsers drops what was learned about a sandbox (close calls it).
func (p *Provider) forgetUsers(id string) {
	p.users.mu.Lock()
	defer p.users.mu.Unlock()
	for k := range p.users.suOK {
		if strings.HasPrefix(k, id+"\x00") {
			delete(p.users.suOK, k)
		}
	}
}

func isRootUser(user string) bool { return user == "root" || user == "0" }

// userForm decides how an exec for user runs. It returns the su user ("" for
// a plain exec), or a runtime-failure result when the user cannot be had.
func (p *Provider) userForm(ctx context.Context, h *handles.Handle, user, execID string) (string, *provider.ExecResult, error) {
	if user == "" {
		return "", nil, nil
	}
	uid, fail, err := p.defaultUID(ctx, h, execID)
	if err != nil || fail != nil {
		return "", fail, err
	}
	if isRootUser(user) {
		if uid != 0 {
			r := sandboxFailure(execID, fmt.Sprintf(
				"user %q asks for root, but commands in sandbox %s run as uid %d, and gym-apptainer never runs a command as another user than asked; to get root inside, %s",
				user, h.ID, uid, fakerootHint))
			return "", &r, nil
		}
		return "", nil, nil
	}
	if uid != 0 {
		r := sandboxFailure(execID, fmt.Sprintf(
			"running as user %q needs root inside the sandbox to switch users, but commands in sandbox %s run as uid %d; %s",
			user, h.ID, uid, fakerootHint))
		return "", &r, nil
	}
	if fail, err := p.suPreflight(ctx, h, user, execID); err != nil || fail != nil {
		return "", fail, err
	}
	return user, nil, nil
}

// checkTimeout bounds one user check: a trivial command, like the probe.
func (p *Provider) checkTimeout() time.Duration {
	if t := p.cfg.Apptainer.Probe.Timeout; t > 0 {
		return t
	}
	return userCheckFallback
}

// learned is what a shared check found: a value, or the runtime failure that
// kept it from finding one.
type learned struct {
	uid  int
	fail *provider.ExecResult
}

// failFor gives a shared failure the id of the exec it is reported for.
func (l learned) failFor(execID string) *provider.ExecResult {
	if l.fail == nil {
		return nil
	}
	r := *l.fail
	r.ExecID = execID
	return &r
}

// defaultUID is the uid a plain exec gets in the sandbox. Unknown (-1) in
// the handle, it is learned with one `id -u` through the ordinary exec path
// and saved, so that no later process asks again. Concurrent askers share
// one check.
func (p *Provider) defaultUID(ctx context.Context, h *handles.Handle, execID string) (int, *provider.ExecResult, error) {
	if h.DefaultUID >= 0 {
		return h.DefaultUID, nil, nil
	}
	if cur, err := p.handle(h.ID); err == nil && cur.DefaultUID >= 0 {
		return cur.DefaultUID, nil, nil // learned since h was read
	}
	v, err, _ := p.users.flights.Do("uid\x00"+h.ID, func() (any, error) {
		if cur, err := p.handle(h.ID); err == nil && cur.DefaultUID >= 0 {
			return learned{uid: cur.DefaultUID}, nil // learned while we queued
		}
		out, errb := &syncbuf.Head{Max: maxPrefix}, &syncbuf.Head{Max: maxPrefix}
		res, err := p.runCommand(ctx, h, provider.ExecRequest{
			Command: "id -u",
			Stdout:  out,
			Stderr:  errb,
			Timeout: p.checkTimeout(),
			ExecID:  uuid.NewString(),
		}, execOpts{})
		if err != nil {
			return learned{}, fmt.Errorf("learning the default uid of sandbox %s: %w", h.ID, err)
		}
		if res.ErrorType != "" {
			r := res
			r.Message = "learning the sandbox's default uid: " + res.Message
			return learned{fail: &r}, nil
		}
		uid, perr := strconv.Atoi(strings.TrimSpace(out.String()))
		if res.ExitCode != 0 || perr != nil || uid < 0 {
			r := sandboxFailure("", fmt.Sprintf("could not learn the default uid of sandbox %s: `id -u` exited %d with stdout %q, stderr %q",
				h.ID, res.ExitCode, out.String(), strings.TrimSpace(errb.String())))
			return learned{fail: &r}, nil
		}
		p.recordDefaultUID(h.ID, uid)
		return learned{uid: uid}, nil
	})
	if err != nil {
		return 0, nil, err
	}
	l := v.(learned)
	return l.uid, l.failFor(execID), nil
}

// recordDefaultUID saves a learned uid into the current handle. A failure
// to save only costs a later process the same check, so it is logged. A
// sandbox closed meanwhile has no handle to update, and gets none back.
func (p *Provider) recordDefaultUID(id string, uid int) {
	if err := p.updateHandle(id, func(cur *handles.Handle) bool {
		cur.DefaultUID = uid
		return true
	}); err != nil {
		p.log.Warn("could not save the learned default uid", "sandbox", id, "uid", uid, "error", err)
	}
}

// suPreflight proves, once per sandbox and user in this process, that
// `su -p -s /bin/sh USER -c 'id -u'` works and prints a uid. It fails when
// the image has no such user, or when the sandbox's user namespace maps a
// single uid so that su cannot become anyone else.
func (p *Provider) suPreflight(ctx context.Context, h *handles.Handle, user, execID string) (*provider.ExecResult, error) {
	if p.users.passed(h.ID, user) || h.Extra[extraSuPassed+user] != "" {
		return nil, nil
	}
	v, err, _ := p.users.flights.Do("su\x00"+suKey(h.ID, user), func() (any, error) {
		if p.users.passed(h.ID, user) { // passed while we queued
			return learned{}, nil
		}
		if cur, err := p.handle(h.ID); err == nil && cur.Extra[extraSuPassed+user] != "" {
			p.users.pass(h.ID, user) // another process proved it
			return learned{}, nil
		}
		out, errb := &syncbuf.Head{Max: maxPrefix}, &syncbuf.Head{Max: maxPrefix}
		res, err := p.runCommand(ctx, h, provider.ExecRequest{
			Command: "id -u",
			Stdout:  out,
			Stderr:  errb,
			Timeout: p.checkTimeout(),
			ExecID:  uuid.NewString(),
		}, execOpts{su: user})
		if err != nil {
			return learned{}, fmt.Errorf("checking that sandbox %s can run commands as %q: %w", h.ID, user, err)
		}
		if res.ErrorType != "" {
			r := res
			r.Message = fmt.Sprintf("checking that commands can run as user %q: %s", user, res.Message)
			return learned{fail: &r}, nil
		}
		if _, perr := strconv.Atoi(strings.TrimSpace(out.String())); res.ExitCode != 0 || perr != nil {
			r := sandboxFailure("", fmt.Sprintf(
				"cannot run commands as user %q in sandbox %s: `su -p -s /bin/sh %s -c 'id -u'` exited %d (%s). "+
					"Either the image's /etc/passwd has no such user, or the sandbox's user namespace maps a single uid so su cannot switch users: %s",
				user, h.ID, user, res.ExitCode, oneLine(errb.String()), fakerootHint))
			return learned{fail: &r}, nil
		}
		p.users.pass(h.ID, user)
		p.recordSuPassed(h.ID, user)
		return learned{}, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(learned).failFor(execID), nil
}

// extraSuPassed + user is the handle Extra key saying su to user was proved
// to work in the sandbox: later processes (a gym-host per call) skip the
// check, so that a command as a user costs one exec, as any other.
const extraSuPassed = "su_ok:"

// recordSuPassed saves a passed su check into the current handle; a failure
// to save only costs a later process the same check.
func (p *Provider) recordSuPassed(id, user string) {
	if err := p.updateHandle(id, func(cur *handles.Handle) bool {
		if cur.Extra == nil {
			cur.Extra = map[string]string{}
		}
		cur.Extra[extraSuPassed+user] = "1"
		return true
	}); err != nil {
		p.log.Warn("could not save a passed user check", "sandbox", id, "user", user, "error", err)
	}
}

// oneLine squeezes a command's stderr into a message fragment.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(ansi.Strip(s)), " ")
	if s == "" {
		return "no error output"
	}
	if len(s) > 500 {
		s = s[:500] + "..."
	}
	return s
}
