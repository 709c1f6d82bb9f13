// Package admin holds the operator dashboard: static HTML, CSS and JavaScript modules, embedded
// into the api binary and served at /admin/. There is no build step.
package admin

import (
	"embed"
	"io/fs"
	"path"
	"slices"
	"strings"

	jsclient "github.com/streamgate/streamgate/clients/js"
)

//go:embed index.html assets/*.css assets/*.js assets/render/*.js assets/vendor
var own embed.FS

// clientDir is where the JavaScript client appears among the dashboard's files.
const clientDir = "assets/client"

// Files is the dashboard: index.html and, under assets/, the stylesheet, main.js (the entry)
// with the modules it imports, render/ (the views' DOM code), vendor/ (uPlot) and client/ (the
// JavaScript client of clients/js, whose event-stream reader the dashboard uses: one parser,
// one backoff, for tenants' pages and for operators).
var Files fs.ReadFileFS = mount{base: own, at: clientDir, sub: jsclient.Files}

// mount shows one file system inside another at a folder path, as a mount does.
type mount struct {
	base fs.FS
	at   string
	sub  fs.FS
}

// route names the file system and the name in it that serves name.
func (m mount) route(name string) (fs.FS, string) {
	if name == m.at {
		return m.sub, "."
	}
	if rest, ok := strings.CutPrefix(name, m.at+"/"); ok {
		return m.sub, rest
	}
	return m.base, name
}

func (m mount) Open(name string) (fs.File, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	fsys, rest := m.route(name)
	return fsys.Open(rest)
}

func (m mount) ReadFile(name string) ([]byte, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "readfile", Path: name, Err: fs.ErrInvalid}
	}
	fsys, rest := m.route(name)
	return fs.ReadFile(fsys, rest)
}

// ReadDir lists a folder, with the mount point among its parent's entries.
func (m mount) ReadDir(name string) ([]fs.DirEntry, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: fs.ErrInvalid}
	}
	fsys, rest := m.route(name)
	entries, err := fs.ReadDir(fsys, rest)
	if err != nil || name != path.Dir(m.at) {
		return entries, err
	}
	root, err := fs.Stat(m.sub, ".")
	if err != nil {
		return nil, err
	}
	entries = append(entries, fs.FileInfoToDirEntry(renamed{root, path.Base(m.at)}))
	slices.SortFunc(entries, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return entries, nil
}

// renamed is a folder's FileInfo under the name it is mounted as.
type renamed struct {
	fs.FileInfo
	name string
}

func (r renamed) Name() string { return r.name }
