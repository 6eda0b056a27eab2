package main

import "github.com/gym-apptainer/gym-apptainer/test/internal/realenv"

// The bench's names for what it shares with the soak (test/internal/realenv).
type proc = realenv.Proc

const nodeAgentBinary = realenv.NodeAgentBinary

var (
	scanProcs        = realenv.ScanProcs
	readProc         = realenv.ReadProc
	starterName      = realenv.StarterName
	instanceTree     = realenv.InstanceTree
	waitProcsGone    = realenv.WaitProcsGone
	stillAlive       = realenv.StillAlive
	isolateEnv       = realenv.IsolateEnv
	nodeState        = realenv.NodeState
	liveJobs         = realenv.LiveJobs
	jobsUnder        = realenv.JobsUnder
	killPid          = realenv.KillPid
	writeConfig      = realenv.WriteLocalConfig
	writeSlurmConfig = realenv.WriteSlurmConfig
	moduleDir        = realenv.ModuleDir
	goBuild          = realenv.GoBuild
)
