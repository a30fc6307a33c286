package command

import (
	"reflect"
	"testing"
)

func TestCreateOptionsStdio(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    createOptions
		want containerConfig
	}{
		{"default", createOptions{}, containerConfig{AttachStdout: true, AttachStderr: true}},
		{"-i", createOptions{interactive: true}, containerConfig{OpenStdin: true, StdinOnce: true, AttachStdin: true, AttachStdout: true, AttachStderr: true}},
		{"-a stdout", createOptions{attach: []string{"stdout"}}, containerConfig{AttachStdout: true}},
		{"-i -a STDERR", createOptions{interactive: true, attach: []string{"STDERR"}}, containerConfig{OpenStdin: true, StdinOnce: true, AttachStdin: true, AttachStderr: true}},
		{"-a stdin", createOptions{attach: []string{"stdin"}}, containerConfig{AttachStdin: true}},
	} {
		got, err := tc.o.config()
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %+v, %v; want %+v", tc.name, got, err, tc.want)
		}
	}
	if _, err := (createOptions{attach: []string{"stdio"}}).config(); err == nil {
		t.Error("-a stdio was accepted")
	}
	ao, err := createOptions{interactive: true, tty: true}.attachOptions("", true)
	if err != nil || !ao.stdin || !ao.tty || ao.sigProxy || len(ao.detachKeys) != 2 {
		t.Errorf("-it: %+v, %v; want stdin, tty, no signal forwarding, the default keys", ao, err)
	}
}
