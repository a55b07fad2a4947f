"""Errors a user can cause (bad files, bad coordinates), reported as one clear line, never a traceback."""


class InputError(ValueError):
    """Bad user input: the message names the file or value and what is wrong with it.

    Example:
        >>> raise InputError("ct.nii.gz: image is 2D (512x512); a 3D CT volume is needed")
    """
