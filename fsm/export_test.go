package fsm

// Shallow is shallow, for the tests of package fsm_test.
var Shallow = shallow
