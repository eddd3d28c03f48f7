package gui

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/cardmail/cardmail/mail"
	"github.com/cardmail/cardmail/profile"
	"github.com/cardmail/cardmail/words"
)

// PageSize is the number of message headers the folder browser shows per page.
const PageSize = 50

// columnWidths are the widths of the date, sender and subject columns: together they fit the message list of a
// browser at its default size, so that the list does not scroll sideways (TestViewsFitDefaultSize).
var columnWidths = [3]float32{130, 180, 300}

// loadTimeout bounds one background load of the folder browser (folders or one page of headers).
const loadTimeout = 60 * time.Second

// folderBrowser shows one account's mailbox: the folder tree, one page of the selected folder's message headers,
// and the message selected there (messageView). Every load runs as a job (a newer load cancels the older one, the
// Stop button and closing the window cancel it too) and hands its result to the UI goroutine with fyne.Do. When the
// card leaves, everything of the person's mail leaves the screen (cardGone). Fields are touched on the UI goroutine
// only.
type folderBrowser struct {
	life
	win  fyne.Window
	lang words.Lang
	svc  MailService
	prof *profile.Profile
	// onResult, when set, learns the outcome of every folder load (nil error: connected); UI goroutine.
	onResult func(error)
	// onReconnect, when set, reconnects the accounts that wait for the card (the accounts view's Reconnect): the
	// browser offers it once the card is back. UI goroutine.
	onReconnect func()

	folders  map[string]mail.Folder // by full name; parents missing from the server's list are added as NoSelect
	children map[string][]string    // tree: parent full name ("" for the root) → children, sorted
	selected string                 // folder whose headers are shown, "" before the first selection
	headers  []mail.Header
	total    int
	page     int // 0 = newest

	tree       *widget.Tree
	table      *widget.Table
	prev       *widget.Button
	next       *widget.Button
	refreshB   *widget.Button
	stop       *widget.Button
	reconnectB *widget.Button
	pageLabel  *widget.Label
	status     *widget.Label
	details    *widget.Label
	progress   *widget.ProgressBarInfinite
	reader     *messageView

	load *job // the folder list or one page of headers
}

// OpenFolderBrowser opens a window on p's mailbox and starts loading its folders. UI goroutine only. onResult, when
// not nil, is called on the UI goroutine after every folder load with its error (nil: the mailbox answered).
func OpenFolderBrowser(a fyne.App, lang words.Lang, svc MailService, p *profile.Profile, onResult func(error)) fyne.Window {
	w, _ := openBrowser(a, lang, svc, p, onResult, nil)
	return w
}

// openBrowser opens the browser window; onClosed, when not nil, runs after the window closed (UI goroutine).
func openBrowser(a fyne.App, lang words.Lang, svc MailService, p *profile.Profile, onResult func(error),
	onClosed func()) (fyne.Window, *folderBrowser) {
	w := a.NewWindow(words.T(lang, "folders.title", map[string]any{"Name": p.Name}))
	b := newFolderBrowser(w, lang, svc, p)
	b.onResult = onResult
	w.SetContent(b.content())
	w.SetOnClosed(func() {
		b.end()
		b.load.drop()
		b.reader.drop()
		if onClosed != nil {
			onClosed()
		}
	})
	w.Resize(browserSize)
	w.Show()
	b.refresh()
	return w, b
}

func newFolderBrowser(w fyne.Window, lang words.Lang, svc MailService, p *profile.Profile) *folderBrowser {
	b := &folderBrowser{win: w, lang: lang, svc: svc, prof: p.Clone(), folders: map[string]mail.Folder{},
		children: map[string][]string{}}
	b.tree = widget.NewTree(
		func(id widget.TreeNodeID) []widget.TreeNodeID { return b.children[id] },
		func(id widget.TreeNodeID) bool { return id == "" || len(b.children[id]) > 0 },
		func(bool) fyne.CanvasObject {
			return container.NewHBox(widget.NewIcon(theme.FolderIcon()), widget.NewLabel("folder"))
		},
		b.fillNode)
	b.tree.OnSelected = func(id widget.TreeNodeID) {
		if f, ok := b.folders[id]; !ok || f.NoSelect {
			b.tree.Unselect(id) // a NoSelect folder holds no messages: it cannot be opened
			return
		}
		if id != b.selected {
			b.selected, b.page = id, 0
			b.reader.clear("")
			b.loadHeaders()
		}
	}

	b.table = widget.NewTableWithHeaders(
		func() (int, int) { return len(b.headers), 3 },
		func() fyne.CanvasObject {
			l := widget.NewLabel("message")
			l.Truncation = fyne.TextTruncateEllipsis
			return l
		},
		func(id widget.TableCellID, o fyne.CanvasObject) {
			if id.Row < 0 || id.Row >= len(b.headers) {
				return
			}
			h := b.headers[id.Row]
			var s string
			switch id.Col {
			case 0:
				if !h.Date.IsZero() {
					s = h.Date.Local().Format("2006-01-02 15:04")
				}
			case 1:
				s = h.From
			case 2:
				s = h.Subject
			}
			o.(*widget.Label).SetText(s)
		})
	b.table.ShowHeaderColumn = false
	b.table.CreateHeader = func() fyne.CanvasObject {
		return widget.NewLabelWithStyle("column", fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	}
	b.table.UpdateHeader = func(id widget.TableCellID, o fyne.CanvasObject) {
		keys := []string{"folders.col_date", "folders.col_from", "folders.col_subject"}
		if id.Row == -1 && id.Col >= 0 && id.Col < len(keys) {
			o.(*widget.Label).SetText(b.t(keys[id.Col], nil))
		}
	}
	for i, w := range columnWidths {
		b.table.SetColumnWidth(i, w)
	}
	b.table.OnSelected = func(id widget.TableCellID) {
		if id.Row >= 0 && id.Row < len(b.headers) {
			b.reader.open(b.headers[id.Row].Ref(b.selected))
		}
	}

	b.prev = widget.NewButtonWithIcon(b.t("folders.previous", nil), theme.NavigateBackIcon(), func() {
		if b.page > 0 {
			b.page--
			b.loadHeaders()
		}
	})
	b.next = widget.NewButtonWithIcon(b.t("folders.next", nil), theme.NavigateNextIcon(), func() {
		if (b.page+1)*PageSize < b.total {
			b.page++
			b.loadHeaders()
		}
	})
	b.refreshB = widget.NewButtonWithIcon(b.t("folders.refresh", nil), theme.ViewRefreshIcon(), b.refresh)
	b.stop = widget.NewButtonWithIcon(b.t("pin.cancel", nil), theme.CancelIcon(), func() { b.load.drop() })
	b.stop.Hide()
	b.reconnectB = widget.NewButtonWithIcon(b.t("accounts.reconnect", nil), theme.ViewRefreshIcon(), func() {
		b.reconnectB.Hide()
		if b.onReconnect != nil {
			b.onReconnect()
		}
	})
	b.reconnectB.Importance = widget.HighImportance
	b.reconnectB.Hide()
	b.pageLabel = widget.NewLabel("")
	b.pageLabel.Alignment = fyne.TextAlignCenter
	b.status = widget.NewLabel("")
	b.status.Wrapping = fyne.TextWrapWord
	b.status.Hide()
	b.details = widget.NewLabel("")
	b.details.Wrapping = fyne.TextWrapBreak
	b.details.Importance = widget.LowImportance
	b.details.Hide()
	b.progress = widget.NewProgressBarInfinite()
	b.progress.Stop()
	b.progress.Hide()
	b.load = &job{life: &b.life, timeout: loadTimeout, onBusy: b.showBusy}
	b.reader = newMessageView(w, lang, svc, b.prof, &b.life)
	b.updatePaging()
	return b
}

// showBusy shows the progress of a load and its Stop button while it runs. UI goroutine.
func (b *folderBrowser) showBusy(on bool) {
	if on {
		b.progress.Show()
		b.progress.Start()
		b.stop.Show()
		b.refreshB.Disable()
		return
	}
	b.progress.Stop()
	b.progress.Hide()
	b.stop.Hide()
	b.refreshB.Enable()
}

func (b *folderBrowser) t(key string, data map[string]any) string { return words.T(b.lang, key, data) }

// fillNode shows a folder's last name component and its unseen count, in bold when it has unseen messages.
func (b *folderBrowser) fillNode(id widget.TreeNodeID, _ bool, o fyne.CanvasObject) {
	row := o.(*fyne.Container).Objects
	label := row[1].(*widget.Label)
	f, ok := b.folders[id]
	if !ok {
		return
	}
	name := leafName(f)
	if f.Unseen > 0 {
		name = b.t("folders.unseen", map[string]any{"Name": name, "Unseen": f.Unseen})
	}
	label.TextStyle.Bold = f.Unseen > 0
	label.Importance = widget.MediumImportance
	if f.NoSelect {
		label.Importance = widget.LowImportance
	}
	label.SetText(name)
}

// leafName is the last component of a folder's hierarchical name.
func leafName(f mail.Folder) string {
	if f.Delim != 0 {
		if i := strings.LastIndex(f.Name, string(f.Delim)); i >= 0 && i+1 < len(f.Name) {
			return f.Name[i+1:]
		}
	}
	return f.Name
}

// folderTree builds the tree of folder names from their delimiters: the parent of "A/B/C" is "A/B". A parent the
// server did not list is added as a NoSelect folder. INBOX comes first, then the others in name order.
func folderTree(fs []mail.Folder) (map[string]mail.Folder, map[string][]string) {
	byName := make(map[string]mail.Folder, len(fs))
	for _, f := range fs {
		if f.Name != "" {
			byName[f.Name] = f
		}
	}
	children := map[string][]string{}
	var add func(f mail.Folder)
	added := map[string]bool{}
	add = func(f mail.Folder) {
		if added[f.Name] {
			return
		}
		added[f.Name] = true
		parent := ""
		if f.Delim != 0 {
			if i := strings.LastIndex(f.Name, string(f.Delim)); i > 0 {
				parent = f.Name[:i]
			}
		}
		if parent != "" {
			pf, ok := byName[parent]
			if !ok {
				pf = mail.Folder{Name: parent, Delim: f.Delim, NoSelect: true}
				byName[parent] = pf
			}
			add(pf)
		}
		children[parent] = append(children[parent], f.Name)
	}
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		add(byName[n])
	}
	for _, kids := range children {
		slices.SortFunc(kids, func(a, b string) int {
			switch {
			case a == b:
				return 0
			case strings.EqualFold(a, "INBOX"):
				return -1
			case strings.EqualFold(b, "INBOX"):
				return 1
			}
			return strings.Compare(a, b)
		})
	}
	return byName, children
}

// content lays the browser out: toolbar with refresh and progress, tree on the left, the headers with paging above
// the open message on the right.
func (b *folderBrowser) content() fyne.CanvasObject {
	top := container.NewVBox(
		container.NewBorder(nil, nil, widget.NewLabelWithStyle(b.prof.Address, fyne.TextAlignLeading,
			fyne.TextStyle{Bold: true}), container.NewHBox(b.stop, b.reconnectB, b.refreshB), b.progress),
		b.status, b.details)
	paging := container.NewBorder(nil, nil, b.prev, b.next, b.pageLabel)
	messages := container.NewVSplit(container.NewBorder(nil, paging, nil, nil, b.table), b.reader.content())
	messages.Offset = 0.45
	split := container.NewHSplit(b.tree, messages)
	split.Offset = 0.28
	return container.NewBorder(top, nil, nil, nil, split)
}

// refresh reloads the folders, then the selected folder's headers (INBOX the first time). UI goroutine.
func (b *folderBrowser) refresh() {
	svc, p := b.svc, b.prof
	b.load.start(func(ctx context.Context, r run) {
		fs, err := svc.Folders(ctx, p)
		r.end(func() { b.applyFolders(fs, err) })
	})
}

// applyFolders shows a folder load's result; UI goroutine.
func (b *folderBrowser) applyFolders(fs []mail.Folder, err error) {
	if b.onResult != nil {
		b.onResult(err)
	}
	if err != nil {
		b.showError(err)
		return
	}
	b.clearError()
	b.folders, b.children = folderTree(fs)
	b.tree.Refresh()
	b.tree.OpenAllBranches()
	if f, ok := b.folders[b.selected]; !ok || f.NoSelect {
		b.selected, b.page = "", 0
		b.reader.clear("")
		for _, name := range b.children[""] {
			if f := b.folders[name]; !f.NoSelect {
				b.selected = name
				break
			}
		}
	}
	if b.selected == "" {
		b.headers, b.total = nil, 0
		b.table.Refresh()
		b.updatePaging()
		return
	}
	b.tree.Select(b.selected)
	b.loadHeaders()
}

// loadHeaders loads the current page of the selected folder. UI goroutine.
func (b *folderBrowser) loadHeaders() {
	if b.selected == "" {
		return
	}
	svc, p, folder, page := b.svc, b.prof, b.selected, b.page
	b.load.start(func(ctx context.Context, r run) {
		hs, total, err := svc.Headers(ctx, p, folder, page, PageSize)
		r.end(func() {
			if err != nil {
				b.showError(err)
				return
			}
			b.clearError()
			b.headers, b.total = hs, total
			b.table.UnselectAll()
			b.table.Refresh()
			b.table.ScrollToTop()
			b.updatePaging()
		})
	})
}

// updatePaging shows "page x of y" and enables Previous/Next where there is a page to go to. UI goroutine.
func (b *folderBrowser) updatePaging() {
	pages := (b.total + PageSize - 1) / PageSize
	if pages == 0 {
		b.pageLabel.SetText(b.t("folders.empty", nil))
	} else {
		b.pageLabel.SetText(b.t("folders.page", map[string]any{"Page": b.page + 1, "Pages": pages,
			"Total": strconv.Itoa(b.total)}))
	}
	if b.page > 0 {
		b.prev.Enable()
	} else {
		b.prev.Disable()
	}
	if (b.page+1)*PageSize < b.total {
		b.next.Enable()
	} else {
		b.next.Disable()
	}
}

// showError shows a failed load in plain words (the code's message and remedy); the technical text goes in the
// details line. UI goroutine.
func (b *folderBrowser) showError(err error) {
	message, remedy := explainError(b.lang, err)
	b.status.SetText(message + " " + remedy)
	b.status.Importance = widget.DangerImportance
	b.status.Show()
	b.details.SetText(b.t("details.technical", map[string]any{"Detail": err.Error()}))
	b.details.Show()
}

func (b *folderBrowser) clearError() {
	b.status.Hide()
	b.details.Hide()
	b.reconnectB.Hide()
}

// cardGone tells the browser its card left: the loads stop, and the folder names, the message headers and the open
// message (which often carry patients' names) leave the screen and the browser's memory until the card is back and
// the person reconnects; the status says why. UI goroutine.
func (b *folderBrowser) cardGone() {
	b.load.drop()
	b.reader.drop()
	b.folders, b.children = map[string]mail.Folder{}, map[string][]string{}
	b.selected, b.headers, b.total, b.page = "", nil, 0, 0
	b.tree.UnselectAll()
	b.tree.Refresh()
	b.table.UnselectAll()
	b.table.Refresh()
	b.updatePaging()
	b.reader.clear(b.t("folders.hidden", nil))
	b.reconnectB.Hide()
	b.showError(errCardGone)
}

// cardBack offers to reconnect once the card is back (the accounts view reconnects every account that waits for
// it, with one PIN prompt). UI goroutine.
func (b *folderBrowser) cardBack() {
	if b.onReconnect == nil || len(b.folders) > 0 {
		return
	}
	b.status.SetText(b.t("folders.card_back", nil))
	b.status.Importance = widget.WarningImportance
	b.status.Show()
	b.details.Hide()
	b.reconnectB.Show()
}
