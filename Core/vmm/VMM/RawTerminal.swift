#if canImport(Glibc)
    import Glibc
#endif

/// Puts an interactive terminal on stdin into raw mode while the guest owns the console, so
/// keys (Ctrl-C included) go to the guest unchanged and unechoed, and restores it afterwards.
final class RawTerminal {
    private var saved = termios()
    private let active: Bool

    /// Switches stdin to raw mode if it is a terminal; does nothing otherwise.
    init() {
        guard isatty(STDIN_FILENO) == 1, tcgetattr(STDIN_FILENO, &saved) == 0 else {
            active = false
            return
        }
        var raw = saved
        cfmakeraw(&raw)
        // Keep output post-processing so the host's own log lines still start at column 0.
        raw.c_oflag = saved.c_oflag
        active = tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0
    }

    /// Puts the terminal back as it was.
    func restore() {
        if active { tcsetattr(STDIN_FILENO, TCSANOW, &saved) }
    }
}
