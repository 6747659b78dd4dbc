package testnet

import (
	"context"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// browser returns a headless Chromium context, or skips the test when no
// Chromium is installed (Debian: apt-get install chromium).
func browser(t *testing.T) context.Context {
	t.Helper()
	path := os.Getenv("STRATA_CHROMIUM")
	if path == "" {
		for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
			if p, err := exec.LookPath(name); err == nil {
				path = p
				break
			}
		}
	}
	if path == "" {
		t.Skip("no Chromium installed (apt-get install chromium, or set STRATA_CHROMIUM)")
	}
	profile, err := os.MkdirTemp("", "strata-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(profile),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(func() {
		cancelTimeout()
		cancel()
		cancelAlloc()
		// Chromium's helper processes may still write to the profile for
		// a moment after the browser exits (t.TempDir would fail on it).
		for try := 0; try < 50; try++ {
			if os.RemoveAll(profile) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("could not remove the browser profile %s", profile)
	})
	return ctx
}

// checkDashboard loads the dashboard at url, waits until it shows relays
// relays in layers strata, types a message from client 0 to client 1 and
// waits until it appears in client 1's inbox.
func checkDashboard(t *testing.T, ctx context.Context, url string, relays, layers int) {
	t.Helper()
	var shown, strata int
	text := "hello from the browser " + time.Now().Format("150405.000")
	err := chromedp.Run(ctx,
		chromedp.Navigate(url),
		chromedp.Poll(`document.querySelectorAll("#graph g.relay").length >= `+strconv.Itoa(relays), nil, chromedp.WithPollingTimeout(90*time.Second)),
		chromedp.Evaluate(`document.querySelectorAll("#graph g.relay").length`, &shown),
		chromedp.Evaluate(`new Set([...document.querySelectorAll("#graph g.relay")].map(g => g.dataset.layer)).size`, &strata),
		chromedp.WaitVisible(`#inbox-1`, chromedp.ByID),
		chromedp.SetValue(`#from`, "0", chromedp.ByID),
		chromedp.SetValue(`#to`, "1", chromedp.ByID),
		chromedp.SendKeys(`#text`, text, chromedp.ByID),
		chromedp.Click(`#send-button`, chromedp.ByID),
		chromedp.Poll(`[...document.querySelectorAll("#inbox-1 li.message")].some(li => li.textContent.includes(`+strconv.Quote(text)+`))`, nil, chromedp.WithPollingTimeout(90*time.Second)),
	)
	if err != nil {
		var status string
		_ = chromedp.Run(ctx, chromedp.Text(`#send-status`, &status, chromedp.ByID))
		t.Fatalf("dashboard: %v (send status %q)", err, status)
	}
	if shown != relays || strata != layers {
		t.Errorf("dashboard shows %d relays in %d strata, want %d in %d", shown, strata, relays, layers)
	}
}

func TestDashboardPageInABrowser(t *testing.T) {
	ctx := browser(t)
	srv := httptest.NewServer(Dashboard(newPageNet(), nil))
	defer srv.Close()
	checkDashboard(t, ctx, srv.URL, 9, 3)
}
