package mailsrv

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// FolderName is the name of the i-th pre-created folder (0-based), as IMAP lists it.
func FolderName(i int) string { return fmt.Sprintf("Folder%04d", i+1) }

// FolderMessages is how many messages pre-created folder i holds: 3 in every 50th folder (from the first), none in
// the others; the first of the three is unseen.
func FolderMessages(i int) int {
	if i%50 == 0 {
		return 3
	}
	return 0
}

// writeMaildir creates a Maildir++ mailbox at root for address with messages in INBOX and folders folders (Dovecot's
// default maildir layout: ".Name" subdirectories with cur/new/tmp and a maildirfolder marker). The files are written
// directly, which is how thousands of folders are created in well under a second.
func writeMaildir(root, address string, messages, folders int) error {
	if err := mkMaildir(root); err != nil {
		return err
	}
	when := time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)
	for m := 0; m < messages; m++ {
		if err := writeMsg(root, m, when.Add(time.Duration(m)*time.Minute), address, fmt.Sprintf("Message %d", m+1), m%2 == 0); err != nil {
			return err
		}
	}
	var subs strings.Builder
	for i := 0; i < folders; i++ {
		name := FolderName(i)
		dir := filepath.Join(root, "."+name)
		if err := mkMaildir(dir); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "maildirfolder"), nil, 0o600); err != nil {
			return fmt.Errorf("mailsrv: %w", err)
		}
		for m := 0; m < FolderMessages(i); m++ {
			if err := writeMsg(dir, m, when.Add(time.Duration(m)*time.Minute), address, fmt.Sprintf("%s message %d", name, m+1), m != 0); err != nil {
				return err
			}
		}
		subs.WriteString(name + "\n")
	}
	if err := os.WriteFile(filepath.Join(root, "subscriptions"), []byte(subs.String()), 0o600); err != nil {
		return fmt.Errorf("mailsrv: %w", err)
	}
	return nil
}

func mkMaildir(dir string) error {
	for _, s := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, s), 0o700); err != nil {
			return fmt.Errorf("mailsrv: %w", err)
		}
	}
	return nil
}

// writeMsg writes message n into dir/cur with the Maildir info ":2," (+S when seen).
func writeMsg(dir string, n int, when time.Time, to, subject string, seen bool) error {
	msg := fmt.Sprintf("From: Bench <bench@%s>\r\nTo: <%s>\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%d.%d@bench.%s>\r\n\r\nBody of %s.\r\n",
		Domain, to, subject, when.Format(time.RFC1123Z), when.Unix(), n, Domain, subject)
	flags := ""
	if seen {
		flags = "S"
	}
	name := fmt.Sprintf("%d.M%dP1.bench,S=%d:2,%s", when.Unix(), n, len(msg), flags)
	if err := os.WriteFile(filepath.Join(dir, "cur", name), []byte(msg), 0o600); err != nil {
		return fmt.Errorf("mailsrv: %w", err)
	}
	return nil
}
