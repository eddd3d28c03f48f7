package mail

import "github.com/emersion/go-imap/v2"

// Test hooks for the external tests (package mail_test cannot be internal: bench/mailsrv imports diagnosis, which
// imports mail).

func CreateFolder(c *IMAPConn, name string) error { return c.c.Create(name, nil).Wait() }
func DeleteFolder(c *IMAPConn, name string) error { return c.c.Delete(name).Wait() }

// MessageIDOf returns the Message-ID of the message with uid in the selected folder.
func MessageIDOf(c *IMAPConn, uid uint32) (string, error) {
	msgs, err := c.c.Fetch(imap.UIDSetNum(imap.UID(uid)), &imap.FetchOptions{Envelope: true}).Collect()
	if err != nil || len(msgs) != 1 || msgs[0].Envelope == nil {
		return "", err
	}
	return msgs[0].Envelope.MessageID, nil
}
