// Package field names the setting at fault in an error. Library packages report a bad
// value by the Go name of its field ("Budget", "Training.LR"); a front end that knows the
// setting by another name (the command line's --budget, --lr) renames it in the message.
package field

import (
	"errors"
	"fmt"
	"strings"
)

// Error is a bad value of the setting Name. Its message is Name followed by Msg.
type Error struct {
	Name string
	Msg  string // follows the name: " 5: want …" or ": …"
	Err  error  // a more specific error it stands for, if any (errors.As finds it)
}

// Errorf returns an error of the setting name whose message is name followed by the
// formatted text (which should start with a space or a colon).
func Errorf(name, format string, args ...any) *Error {
	return &Error{Name: name, Msg: fmt.Sprintf(format, args...)}
}

func (e *Error) Error() string { return e.Name + e.Msg }

// Unwrap returns the specific error the field error stands for.
func (e *Error) Unwrap() error { return e.Err }

// Rename returns err's message with the name of the first field error in its chain
// replaced by rename(name); ok is false when the chain has no field error, or rename
// knows no other name for it (rename returns "").
func Rename(err error, rename func(name string) string) (msg string, ok bool) {
	msg = err.Error()
	var fe *Error
	if !errors.As(err, &fe) {
		return msg, false
	}
	to := rename(fe.Name)
	if to == "" {
		return msg, false
	}
	return strings.Replace(msg, fe.Error(), to+fe.Msg, 1), true
}
