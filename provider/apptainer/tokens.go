package apptainer

// Every exec checks its exec id and env keys. Byte loops do it without the
// regexp engine, whose cold start showed on the exec's path (about 15 µs
// of the plugin's ~350 µs per command on SLURM); tokens_test.go holds them
// to the regular expressions they replace.

// validExecID: ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$
func validExecID(id string) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case isAlnum(c):
		case (c == '.' || c == '_' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

// validEnvKey: ^[A-Za-z_][A-Za-z0-9_]*$
func validEnvKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case c == '_' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9'
}
