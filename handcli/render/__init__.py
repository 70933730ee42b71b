"""Drawing hands: projection with the artifact's intrinsics, an OpenGL (EGL, headless) backend with a
NumPy/OpenCV painter fallback, colour maps, frame composition and H.264 output. docs/render.md."""
