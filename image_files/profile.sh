# torchyard's login shell settings (/etc/profile.d/torchyard.sh). A login shell (an SSH login, `bash -l`, a new tmux
# window) has just had its PATH set anew by Debian's /etc/profile, which drops the image's: put the venv (and CUDA's
# bin where CUDA_HOME has one, as -devel images with nvcc from a wheel have it) back in front, as the image's ENV has
# them. VIRTUAL_ENV and CUDA_HOME are the image's environment (an SSH session gets it from the SetEnv line the
# entrypoint writes); ~/.profile then puts ~/.local/bin first for the user, as the entrypoint does.
if [ -n "${VIRTUAL_ENV:-}" ] && [ -d "$VIRTUAL_ENV/bin" ]; then
    case ":$PATH:" in
        *":$VIRTUAL_ENV/bin:"*) ;;
        *)
            if [ -n "${CUDA_HOME:-}" ] && [ -d "$CUDA_HOME/bin" ]; then
                PATH="$CUDA_HOME/bin:$PATH"
            fi
            PATH="$VIRTUAL_ENV/bin:$PATH"
            ;;
    esac
    export PATH
fi
