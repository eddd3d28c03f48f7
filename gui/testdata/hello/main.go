// Command hello is the cold-start baseline of BenchmarkColdStart: a minimal Fyne window of the main window's size
// (900×560), built the same way as CardMail (go build, default tags), so that the benchmark separates Fyne's own
// start-up cost (and the window's buffers under a software renderer) from CardMail's.
package main

import (
	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/app"
	"fyne.io/fyne/v2/widget"
)

func main() {
	a := app.NewWithID("fr.cardmail.hello")
	w := a.NewWindow("hello")
	w.SetContent(widget.NewLabel("Hello"))
	w.Resize(fyne.NewSize(900, 560))
	w.ShowAndRun()
}
