package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// decodeErrors explains why data does not decode into a value of type typ,
// problem by problem, each at its field path (groups[0].policy.failover_afer)
// rather than as a line number and a Go type name. It returns nil when it
// finds nothing to say; the caller then reports the decoder's own error.
func decodeErrors(data []byte, typ reflect.Type) Errors {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil || len(root.Content) == 0 {
		return nil
	}
	var es Errors
	walkYAML(root.Content[0], typ, "", &es)
	return es
}

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

func walkYAML(n *yaml.Node, t reflect.Type, path string, es *Errors) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.AliasNode {
		return // not followed: aliases can nest without bound
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		if k := t.Kind(); k != reflect.Struct && k != reflect.Map && k != reflect.Slice && !expect(n, yaml.ScalarNode, t, path, es) {
			return
		}
		v := reflect.New(t).Interface().(yaml.Unmarshaler)
		if err := v.UnmarshalYAML(n); err != nil {
			*es = append(*es, &ValidationError{Field: path, Err: fmt.Errorf("%w: %s", ErrSyntax, trimLine(err.Error()))})
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if !expect(n, yaml.MappingNode, t, path, es) {
			return
		}
		fields := map[string]reflect.Type{}
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "-" || !f.IsExported() {
				continue
			}
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			fields[name] = f.Type
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i].Value
			ft, ok := fields[key]
			if !ok {
				err := ErrUnknown
				if best := closest(key, fields); best != "" {
					err = fmt.Errorf("%w (did you mean %s?)", ErrUnknown, best)
				}
				*es = append(*es, &ValidationError{Field: join(path, key), Err: err})
				continue
			}
			walkYAML(n.Content[i+1], ft, join(path, key), es)
		}
	case reflect.Map:
		if !expect(n, yaml.MappingNode, t, path, es) {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			walkYAML(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value), es)
		}
	case reflect.Slice, reflect.Array:
		if !expect(n, yaml.SequenceNode, t, path, es) {
			return
		}
		for i, c := range n.Content {
			walkYAML(c, t.Elem(), path+"["+strconv.Itoa(i)+"]", es)
		}
	case reflect.Interface:
	default:
		if !expect(n, yaml.ScalarNode, t, path, es) {
			return
		}
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			*es = append(*es, &ValidationError{Field: path, Value: n.Value, Err: fmt.Errorf("%w: want %s", ErrSyntax, kindWord(t))})
		}
	}
}

// expect records a problem when n is not of kind; a null stands for
// nothing and is fine.
func expect(n *yaml.Node, kind yaml.Kind, t reflect.Type, path string, es *Errors) bool {
	if n.Kind == kind {
		return true
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return false
	}
	*es = append(*es, &ValidationError{Field: path, Err: fmt.Errorf("%w: want %s, not %s", ErrSyntax, kindWord(t), nodeWord(n))})
	return false
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// kindWord names what a Go type is written as in YAML.
func kindWord(t reflect.Type) string {
	switch {
	case t == reflect.TypeFor[Duration]():
		return "a duration"
	case t == reflect.TypeFor[ByteSize]():
		return "a size"
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		return "a mapping"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Bool:
		return "true or false"
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	}
	return "a " + t.Kind().String()
}

func nodeWord(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return strconv.Quote(n.Value)
}

// trimLine drops a "line N: " prefix: the field path says where.
func trimLine(s string) string {
	if rest, ok := strings.CutPrefix(s, "line "); ok {
		if i := strings.Index(rest, ": "); i > 0 {
			if _, err := strconv.Atoi(rest[:i]); err == nil {
				return rest[i+2:]
			}
		}
	}
	return s
}

// closest is the known key nearest to key, if it is near enough to be a
// typo (edit distance at most a third of its length, at least 1).
func closest(key string, known map[string]reflect.Type) string {
	best, bestD := "", max(1, len(key)/3)+1
	for k := range known {
		if d := editDistance(key, k); d < bestD || d == bestD && k < best {
			best, bestD = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
