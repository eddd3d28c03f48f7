# The README's commands; each target goes through scripts/dev.sh, which installs what is missing.
.PHONY: demo test bench build screenshots
demo:
	bash scripts/dev.sh demo
test:
	bash scripts/dev.sh test
bench:
	bash scripts/dev.sh bench
build:
	go build -o bin/cardmail .
screenshots:
	bash scripts/screenshots.sh

# Installers (README.md, "Install"); artefacts in dist/. The version comes from FyneApp.toml and git
# (packaging/version.sh). package-windows signs only when CARDMAIL_SIGN_CERT/KEY or CARDMAIL_TEST_SIGN=1 is set.
.PHONY: package-linux package-windows package-macos
package-linux:
	bash scripts/install-deps.sh
	bash packaging/linux/build.sh
package-windows:
	bash scripts/install-deps.sh
	bash packaging/windows/build.sh
package-macos:
	bash packaging/macos/package.sh
