"""``softphone phone``: a terminal softphone on the SDK, interactive or scripted.

* :mod:`~softphone.phone.session`: the pure model (state, call log, what keys do);
* :mod:`~softphone.phone.controller`: drives a Device and feeds the model;
* :mod:`~softphone.phone.app`: the Textual UI (the ``phone`` extra), a thin view;
* :mod:`~softphone.phone.scripted`: one call without UI, for automation and CI;
* :mod:`~softphone.phone.targets`, :mod:`~softphone.phone.audio_specs`: what users type;
* :mod:`~softphone.phone.audio_setup`, :mod:`~softphone.phone.connection`,
  :mod:`~softphone.phone.local_gateway`: opening devices, Device and gateway;
* :mod:`~softphone.phone.cli`: the ``softphone phone`` arguments.
"""
