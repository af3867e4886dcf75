package kubetest

import "syscall"

// sysProcAttr makes the kernel kill etcd and kube-apiserver when the process
// that started them dies, so a killed test run leaves no server behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}
