package reader_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cardmail/cardmail/reader"
)

// Follow card events for ten seconds.
func ExampleWatch() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for ev := range reader.Watch(ctx) {
		switch ev.Kind {
		case reader.CardInserted:
			fmt.Printf("%s: card %X\n", ev.Reader, ev.ATR)
		case reader.CardRemoved, reader.CardReset:
			fmt.Printf("%s: %v, drop its session\n", ev.Reader, ev.Kind)
		case reader.ServiceDown:
			fmt.Println("service lost:", ev.Err)
		}
	}
}

func ExampleList() {
	readers, err := reader.List(context.Background())
	if errors.Is(err, reader.ErrServiceNotRunning) {
		fmt.Println("pcscd is not running")
		return
	}
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, r := range readers {
		fmt.Printf("%s present=%v atr=%X counter=%d\n", r.Name, r.CardPresent, r.ATR, r.EventCount)
	}
}
