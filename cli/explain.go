package cli

import (
	"errors"
	"fmt"
	"io"

	"github.com/cardmail/cardmail/diagnosis"
	"github.com/cardmail/cardmail/mail"
	"github.com/cardmail/cardmail/words"
)

// This file is the CLI's one place where an outcome becomes words: the domain gives errors and diagnosis codes
// (diagnosis.Classify is the one mapping from one to the other), and the contract's "message" and "remedy" are the
// code's sentences in the person's language, from package words.

// outcome is the verdict of a subcommand: the fields every JSON output of the CLI starts with.
type outcome struct {
	OK      bool           `json:"ok"`
	Code    diagnosis.Code `json:"code"`
	Message string         `json:"message"`
	Remedy  string         `json:"remedy"`
	Detail  string         `json:"detail,omitempty"` // the technical error, for IT support
}

// headline is a code's plain-words message.
func headline(lang words.Lang, code diagnosis.Code) string { return words.Message(lang, code) }

// outcomeOf classifies err (nil: ok) and puts the code into words; a message that may have been delivered although
// the server's answer was lost says so.
func outcomeOf(lang words.Lang, err error) outcome {
	o := outcome{Code: diagnosis.Classify(err, diagnosis.Facts{})}
	o.OK = o.Code == diagnosis.OK
	o.Message, o.Remedy = headline(lang, o.Code), words.Remedy(lang, o.Code)
	if errors.Is(err, mail.ErrDeliveryUnconfirmed) {
		o.Message = words.T(lang, "sendtest.unconfirmed", nil)
	}
	if err != nil {
		o.Detail = err.Error()
	}
	return o
}

// print writes a failed outcome for a person: the words, then the code and the technical detail.
func (o outcome) print(w io.Writer) {
	fmt.Fprintf(w, "%s\n%s\n(%s: %s)\n", o.Message, o.Remedy, o.Code, o.Detail)
}

// explainReport puts a diagnosis report's code into words (its contract fields message and remedy), before it is
// printed as JSON or text.
func explainReport(lang words.Lang, r *diagnosis.Report) *diagnosis.Report {
	r.Message, r.Remedy = headline(lang, r.Code), words.Remedy(lang, r.Code)
	return r
}
