package token

import (
	"testing"
	"time"
)

func TestExpiresInDays(t *testing.T) {
	now := time.Date(2027, 3, 1, 10, 0, 0, 0, time.UTC)
	h := time.Hour
	for _, c := range []struct {
		end  time.Time
		want int
	}{
		{now.Add(12*24*h + h), 12},
		{now.Add(12 * 24 * h), 12},
		{now.Add(12*24*h - time.Second), 11},
		{now.Add(3 * h), 0},
		{now, 0},
		{now.Add(-time.Second), -1},
		{now.Add(-24 * h), -1},
		{now.Add(-24*h - time.Second), -2},
	} {
		if got := ExpiresInDays(c.end, now); got != c.want {
			t.Errorf("%v before the end: %d, want %d", c.end.Sub(now), got, c.want)
		}
	}
}

func TestPINStateFromFlags(t *testing.T) {
	for _, c := range []struct {
		ti    TokenInfo
		state PINState
		tries int
	}{
		{TokenInfo{}, PINStateOK, -1},
		{TokenInfo{UserPINCountLow: true}, PINStateCountLow, -1},
		{TokenInfo{UserPINFinalTry: true, UserPINCountLow: true}, PINStateFinalTry, 1},
		{TokenInfo{UserPINLocked: true, UserPINFinalTry: true}, PINStateLocked, 0},
	} {
		if c.ti.PINState() != c.state || c.ti.PINTriesLeft() != c.tries {
			t.Errorf("%+v: %s %d, want %s %d", c.ti, c.ti.PINState(), c.ti.PINTriesLeft(), c.state, c.tries)
		}
	}
}
