package mapping

import "testing"

func TestCompileGlob(t *testing.T) {
	for _, tc := range []struct {
		glob, subject string
		want          bool
	}{
		{"vib_*", "vib_x", true},
		{"vib_*", "vib_x/y", false},
		{"vib_[xyz]", "vib_y", true},
		{"vib_[!xyz]", "vib_y", false},
		{"vib_?", "vib_x", true},
		{"*/*/*/Pressure**", "g/n/d/Pressure/Discharge", true},
		{"**/temp*", "a/b/c/temp_de", true},
		{"a.b", "axb", false},
		{"a+(b)", "a+(b)", true},
	} {
		re, err := compileGlob(tc.glob)
		if err != nil {
			t.Fatalf("compileGlob(%q): %v", tc.glob, err)
		}
		if got := re.MatchString(tc.subject); got != tc.want {
			t.Errorf("glob %q on %q = %v, want %v", tc.glob, tc.subject, got, tc.want)
		}
	}
	for _, bad := range []string{"[", "a[]", "[!]"} {
		if _, err := compileGlob(bad); err == nil {
			t.Errorf("compileGlob(%q) accepted", bad)
		}
	}
}
