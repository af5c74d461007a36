package live

// Environment of TestRunScenario, set by `sim run` (see the runner package).
const (
	EnvScenario = "SIM_LIVE_SCENARIO" // scenario file
	EnvSeed     = "SIM_LIVE_SEED"     // seed of this run
	EnvResult   = "SIM_LIVE_RESULT"   // where to write the result (JSON)
	EnvNodeLogs = "SIM_LIVE_NODE_LOGS"
)
