// Command stamp prints version.String(); packaging_test.go builds it with packaging/version.sh's -ldflags.
package main

import (
	"fmt"

	"github.com/cardmail/cardmail/version"
)

func main() { fmt.Println(version.String()) }
