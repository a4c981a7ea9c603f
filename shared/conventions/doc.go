// Package conventions holds no code, only tests that enforce rules of the
// whole repository: every package has a doc comment, sm-edge links neither
// the database driver, nor training code, nor anything of the collector, and
// shared/ and models/ never import the binaries.
package conventions
