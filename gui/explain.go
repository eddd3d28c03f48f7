package gui

import (
	"github.com/cardmail/cardmail/diagnosis"
	"github.com/cardmail/cardmail/words"
)

// This file is the GUI's one place where an outcome becomes words: the domain gives errors and diagnosis codes
// (diagnosis.Classify is the one mapping from one to the other), and a person reads the code's headline and remedy
// in their language, from package words.

// errorCode names the diagnosis code of an error from the domain (card, mail, diagnosis).
func errorCode(err error) diagnosis.Code { return diagnosis.Classify(err, diagnosis.Facts{}) }

// headline is what went wrong (or right) in plain words.
func headline(lang words.Lang, code diagnosis.Code) string { return words.Message(lang, code) }

// remedy is what the person can do about it.
func remedy(lang words.Lang, code diagnosis.Code) string { return words.Remedy(lang, code) }

// explainError returns the headline and the remedy for err.
func explainError(lang words.Lang, err error) (string, string) {
	code := errorCode(err)
	return headline(lang, code), remedy(lang, code)
}

// explainReport returns a copy of r with the words for its code (message and remedy), as copied to the clipboard
// or saved for IT support.
func explainReport(lang words.Lang, r *diagnosis.Report) *diagnosis.Report {
	c := *r
	c.Message, c.Remedy = headline(lang, reportCode(r)), remedy(lang, reportCode(r))
	return &c
}

// reportCode is the code a report shows: OK when it passed, Internal when it has none.
func reportCode(r *diagnosis.Report) diagnosis.Code {
	switch {
	case r.OK:
		return diagnosis.OK
	case r.Code == "":
		return diagnosis.Internal
	}
	return r.Code
}
