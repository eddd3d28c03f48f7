package gui

import (
	"context"
	"io"

	"github.com/cardmail/cardmail/autoconfig"
	"github.com/cardmail/cardmail/diagnosis"
	"github.com/cardmail/cardmail/mail"
	"github.com/cardmail/cardmail/profile"
)

// AccountStore is the saved profiles; *profile.Store implements it. Create never overwrites (*profile.ExistsError)
// and Rename replaces the profile old by p without losing it on case-insensitive file systems.
type AccountStore interface {
	List() ([]profile.Entry, error)
	Save(p *profile.Profile) error
	Create(p *profile.Profile) error
	Rename(old string, p *profile.Profile) error
	Delete(name string) error
}

// MailService runs account operations; *app.Accounts implements it.
type MailService interface {
	// Check runs the diagnosis of one side of an account; the report carries a code, the GUI words it (explain.go).
	Check(ctx context.Context, p *profile.Profile, protocol string, progress func(diagnosis.Step)) *diagnosis.Report
	Folders(ctx context.Context, p *profile.Profile) ([]mail.Folder, error)
	Headers(ctx context.Context, p *profile.Profile, folder string, page, pageSize int) ([]mail.Header, int, error)
	// Message fetches one message (headers, text, list of attachments) without marking it as read.
	Message(ctx context.Context, p *profile.Profile, ref mail.MessageRef) (*mail.Message, error)
	// Attachment writes the decoded contents of one attachment (its part number in Message's list) to w.
	Attachment(ctx context.Context, p *profile.Profile, ref mail.MessageRef, part []int, w io.Writer) (int64, error)
	SendTest(ctx context.Context, p *profile.Profile, body string) (*mail.Sent, error)
	Discover(ctx context.Context, address string) (*autoconfig.Result, error)
}
