package version

import "testing"

func TestString(t *testing.T) {
	tests := []struct {
		name, version, commit, want string
	}{
		{"unstamped", "dev", "", "dev"},
		{"release", "0.1.0", "", "0.1.0"},
		{"release with commit", "0.1.0", "abc1234", "0.1.0 (abc1234)"},
		{"dev with commit", "dev", "abc1234", "dev (abc1234)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			oldV, oldC := Version, Commit
			t.Cleanup(func() { Version, Commit = oldV, oldC })
			Version, Commit = tt.version, tt.commit
			if got := String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}
