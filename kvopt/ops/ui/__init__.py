"""`kvopt ui`: the local web app (:func:`kvopt.ops.ui.app.create_app`)."""
