# The README's commands; each target goes through scripts/dev.sh, which installs what is missing.
.PHONY: demo test bench build
demo:
	bash scripts/dev.sh demo
test:
	bash scripts/dev.sh test
bench:
	bash scripts/dev.sh bench
build:
	go build -o bin/cardmail .
