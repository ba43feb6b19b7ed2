package app

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
)

// Methods maps "Service.Method" to a callable, built by reflection from the
// very same service values that are bound to Wails. A method bound on one
// side therefore cannot be forgotten on the other.
type Methods struct {
	byName map[string]method
}

type method struct {
	recv reflect.Value
	fn   reflect.Method
}

var errorType = reflect.TypeFor[error]()

// NewMethods indexes every exported method of every service. Service names
// are the struct type names, as Wails uses them (window.go.app.<Type>.<Method>).
func NewMethods(services []any) (*Methods, error) {
	m := &Methods{byName: make(map[string]method)}
	for _, svc := range services {
		v := reflect.ValueOf(svc)
		t := v.Type()
		if t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
			return nil, fmt.Errorf("register service %T: must be a pointer to a struct", svc)
		}
		name := t.Elem().Name()
		for i := range t.NumMethod() {
			fn := t.Method(i)
			if err := checkSignature(fn.Type); err != nil {
				return nil, fmt.Errorf("register %s.%s: %w", name, fn.Name, err)
			}
			m.byName[name+"."+fn.Name] = method{recv: v, fn: fn}
		}
	}
	return m, nil
}

// checkSignature accepts what Wails can bind and what the web transport can
// answer: JSON-able parameters, and results (), (error), (T) or (T, error).
func checkSignature(ft reflect.Type) error {
	switch ft.NumOut() {
	case 0:
	case 1:
	case 2:
		if ft.Out(1) != errorType {
			return errors.New("second result must be error")
		}
	default:
		return errors.New("at most two results (T, error)")
	}
	return nil
}

// Names lists every callable "Service.Method", sorted.
func (m *Methods) Names() []string {
	names := make([]string, 0, len(m.byName))
	for n := range m.byName {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// ErrNoMethod is returned for a name that no service binds.
var ErrNoMethod = errors.New("no such method")

// ArgError is a call whose arguments do not fit the method.
type ArgError struct{ msg string }

func (e *ArgError) Error() string { return e.msg }

// Call invokes name with args given as a JSON array. It returns the
// method's result (nil for none) or its error.
func (m *Methods) Call(name string, rawArgs json.RawMessage) (any, error) {
	meth, ok := m.byName[name]
	if !ok {
		return nil, fmt.Errorf("call %s: %w", name, ErrNoMethod)
	}
	ft := meth.fn.Type // includes the receiver as In(0)
	var raw []json.RawMessage
	if len(rawArgs) > 0 && string(rawArgs) != "null" {
		if err := json.Unmarshal(rawArgs, &raw); err != nil {
			return nil, &ArgError{fmt.Sprintf("call %s: arguments must be a JSON array: %v", name, err)}
		}
	}
	want := ft.NumIn() - 1
	if len(raw) != want {
		return nil, &ArgError{fmt.Sprintf("call %s: takes %d argument(s), got %d", name, want, len(raw))}
	}
	in := make([]reflect.Value, 0, ft.NumIn())
	in = append(in, meth.recv)
	for i, r := range raw {
		p := reflect.New(ft.In(i + 1))
		if err := json.Unmarshal(r, p.Interface()); err != nil {
			return nil, &ArgError{fmt.Sprintf("call %s: argument %d: %v", name, i+1, err)}
		}
		in = append(in, p.Elem())
	}
	out := meth.fn.Func.Call(in)
	switch len(out) {
	case 0:
		return nil, nil
	case 1:
		if ft.Out(0) == errorType {
			return nil, asError(out[0])
		}
		return out[0].Interface(), nil
	default:
		if err := asError(out[1]); err != nil {
			return nil, err
		}
		return out[0].Interface(), nil
	}
}

func asError(v reflect.Value) error {
	if v.IsNil() {
		return nil
	}
	return v.Interface().(error)
}
