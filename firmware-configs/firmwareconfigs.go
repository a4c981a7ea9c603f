// Package firmwareconfigs holds the sensor profiles and example site
// configs that technicians copy and edit, compiled into sm-edge so that
// `sm-edge run` works with the built-in profiles and `sm-edge config
// example` prints the example site config.
//
// profiles/*.yaml has one sensor profile per file (type, unit, physical
// range, alarm limits with deadband, default detector); sites/*.yaml are
// complete edge configs. A test validates every file.
package firmwareconfigs

import "embed"

// Profiles holds profiles/*.yaml; read it with fs.ReadDir(Profiles, "profiles").
//
//go:embed profiles/*.yaml
var Profiles embed.FS

// Sites holds sites/*.yaml.
//
//go:embed sites/*.yaml
var Sites embed.FS

// ProfilesDir is the directory of the profiles inside Profiles.
const ProfilesDir = "profiles"

// ExampleSite is the path inside Sites of the annotated example site config
// that `sm-edge config example` prints.
const ExampleSite = "sites/example-site.yaml"
