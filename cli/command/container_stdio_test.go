package command

import "testing"

func TestCreateOptionsStdio(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    createOptions
		want containerStdio
	}{
		{"default", createOptions{}, containerStdio{AttachStdout: true, AttachStderr: true}},
		{"-i", createOptions{interactive: true}, containerStdio{OpenStdin: true, StdinOnce: true, AttachStdin: true, AttachStdout: true, AttachStderr: true}},
		{"-a stdout", createOptions{attach: []string{"stdout"}}, containerStdio{AttachStdout: true}},
		{"-i -a STDERR", createOptions{interactive: true, attach: []string{"STDERR"}}, containerStdio{OpenStdin: true, StdinOnce: true, AttachStdin: true, AttachStderr: true}},
		{"-a stdin", createOptions{attach: []string{"stdin"}}, containerStdio{AttachStdin: true}},
	} {
		got, err := tc.o.stdio()
		if err != nil || got != tc.want {
			t.Errorf("%s: %+v, %v; want %+v", tc.name, got, err, tc.want)
		}
	}
	if _, err := (createOptions{attach: []string{"stdio"}}).stdio(); err == nil {
		t.Error("-a stdio was accepted")
	}
	ao, err := createOptions{interactive: true, tty: true}.attachOptions("", true)
	if err != nil || !ao.stdin || !ao.tty || ao.sigProxy || len(ao.detachKeys) != 2 {
		t.Errorf("-it: %+v, %v; want stdin, tty, no signal forwarding, the default keys", ao, err)
	}
}
