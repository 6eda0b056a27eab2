package apptainer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

// Files are copied sparse: a 1 GiB file of holes stays a few blocks on disk,
// not a gigabyte (in RAM when the target is a tmpfs). Holes of a source file
// are skipped by SEEK_DATA/SEEK_HOLE; within data, whole blocks of zeros are
// left as holes too, so a copy from any reader is sparse.

// sparseBlock is the unit of hole detection: the page and common fs block.
const sparseBlock = 4096

// copySparse copies src into dst, which must be empty, and sizes dst to the
// bytes copied.
func copySparse(ctx context.Context, dst *os.File, src io.Reader) error {
	w := &sparseWriter{f: dst}
	if f, ok := src.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
			if err := copyDataSegments(ctx, w, f, fi.Size()); err != nil {
				return err
			}
			return w.finish()
		}
	}
	if _, err := io.Copy(w, ctxReader{ctx, src}); err != nil {
		return err
	}
	return w.finish()
}

// copyDataSegments copies the data segments of regular file f (size bytes,
// read from offset 0) to w at the same offsets.
func copyDataSegments(ctx context.Context, w *sparseWriter, f *os.File, size int64) error {
	for _, seg := range dataSegments(f, size) {
		if _, err := f.Seek(seg.off, io.SeekStart); err != nil {
			return err
		}
		w.off = seg.off
		if _, err := io.CopyN(w, ctxReader{ctx, f}, seg.len); err != nil && !errors.Is(err, io.EOF) {
			return err // EOF: the file shrank meanwhile; what was there is copied
		}
	}
	w.off = size
	return nil
}

type segment struct{ off, len int64 }

// dataSegments lists where regular file f (size bytes) holds data. A file
// system without SEEK_DATA is all data.
func dataSegments(f *os.File, size int64) []segment {
	var segs []segment
	for off := int64(0); off < size; {
		data, err := f.Seek(off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // nothing but a hole up to the end
		}
		if err != nil {
			return append(segs, segment{off, size - off})
		}
		hole, err := f.Seek(data, unix.SEEK_HOLE)
		if err != nil || hole > size {
			hole = size
		}
		if hole > data {
			segs = append(segs, segment{data, hole - data})
		}
		off = hole
	}
	return segs
}

// sparseWriter writes at its offset and leaves every all-zero block
// unwritten (a hole in the file, which was empty).
type sparseWriter struct {
	f   *os.File
	off int64
}

func (w *sparseWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		// Runs end at block boundaries of the file, so that a zero block
		// is always a whole, aligned block.
		k := min(len(p), sparseBlock-int(w.off%sparseBlock))
		if isZero(p[:k]) {
			w.off += int64(k)
			n += k
			p = p[k:]
			continue
		}
		// Extend the run over the following non-zero blocks: one write each.
		for k < len(p) {
			next := min(len(p), k+sparseBlock)
			if isZero(p[k:next]) {
				break
			}
			k = next
		}
		m, err := w.f.WriteAt(p[:k], w.off)
		w.off += int64(m)
		n += m
		if err != nil {
			return n, err
		}
		p = p[k:]
	}
	return n, nil
}

// finish sets the file's size: a trailing run of zeros was never written.
func (w *sparseWriter) finish() error {
	return w.f.Truncate(w.off)
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// checkRegular refuses what is not a regular file (a FIFO would block a
// copy forever; a device or socket is no file to copy), naming what it is.
func checkRegular(what, name string, mode fs.FileMode) error {
	if mode.IsRegular() {
		return nil
	}
	return fmt.Errorf("%s: %s is %s, not a regular file; only regular files can be copied: %w", what, name, fileKind(mode), provider.ErrInvalid)
}

func fileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m.IsDir():
		return "a directory"
	case m&fs.ModeSymlink != 0:
		return "a symlink"
	}
	return "a special file"
}

// openNoBlock opens for reading or writing without ever blocking in open(2)
// (a FIFO with no peer would), and checks what was opened is a regular
// file: the check before the open may have been raced.
func openNoBlock(open func(flag int) (*os.File, error), flag int, what, name string) (*os.File, error) {
	f, err := open(flag | unix.O_NONBLOCK | unix.O_NOCTTY)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil {
		err = checkRegular(what, name, fi.Mode())
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
