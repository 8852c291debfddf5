package topology

import (
	"errors"
	"strconv"
	"strings"
)

// FieldError says which key of a spec is wrong, what is wrong with it and how
// to fix it. Parse and Validate return every problem at once, each a
// *FieldError, joined with errors.Join; use FieldErrors to get them back.
type FieldError struct {
	// Field is the YAML path of the key, e.g. "window.size" or
	// "aggregates[2].field" (list indexes count from 0). Empty for a
	// problem with the file as a whole.
	Field string
	// Line is the line of the key in the YAML file, or of the nearest
	// enclosing key when the key itself is missing. 0 when unknown, e.g.
	// for a Spec built in Go.
	Line int
	// Problem says what is wrong, e.g. "must be set for a tumbling window".
	Problem string
	// Fix says how to fix it, e.g. `write e.g. "size: 10s"`. May be empty.
	Fix string
	// Err is the underlying cause, if any (e.g. an *ExprError).
	Err error
}

// Error reads like
//
//	line 7: window.size: must be set for a tumbling window; write e.g. "size: 10s"
//
// without the "line 7: " part when the line is unknown.
func (e *FieldError) Error() string {
	var b strings.Builder
	if e.Line > 0 {
		b.WriteString("line ")
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Problem)
	if e.Fix != "" {
		b.WriteString("; ")
		b.WriteString(e.Fix)
	}
	return b.String()
}

// Unwrap returns the underlying cause, if any.
func (e *FieldError) Unwrap() error { return e.Err }

// FieldErrors returns every *FieldError in err's tree (as built by
// errors.Join), in order. It returns nil if there are none.
func FieldErrors(err error) []*FieldError {
	var out []*FieldError
	var walk func(error)
	walk = func(err error) {
		switch e := err.(type) {
		case nil:
		case *FieldError:
			out = append(out, e)
		case interface{ Unwrap() []error }:
			for _, err := range e.Unwrap() {
				walk(err)
			}
		case interface{ Unwrap() error }:
			walk(e.Unwrap())
		}
	}
	walk(err)
	return out
}

// joinFieldErrors joins errs with errors.Join, or returns nil if there are
// none. errors.Join takes []error, so the conversion lives here.
func joinFieldErrors(errs []*FieldError) error {
	if len(errs) == 0 {
		return nil
	}
	list := make([]error, len(errs))
	for i, e := range errs {
		list[i] = e
	}
	return errors.Join(list...)
}
