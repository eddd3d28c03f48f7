package token

// SetAgentHang makes the agent served by this test binary hang in the named method (see agentHang). TestMain calls
// it from the CARDMAIL_TOKEN_TEST_HANG variable that hangingClient sets for the agent it starts.
func SetAgentHang(op string) { agentHang = op }
