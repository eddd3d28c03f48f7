// Package wine is CardMail's Windows test stage: the MSI installed in a fresh Wine prefix and the installed
// cardmail.exe driven there (CLI, GUI under Xvfb, PC/SC through to the bench's pcscd, a Windows PKCS#11 module,
// the bench's Dovecot). Its test is built only with the "wine" tag, by packaging/wine/stage.sh, which prepares the
// tools it needs (tools.sh) and passes them in the environment; see README.md, "Windows".
package wine
