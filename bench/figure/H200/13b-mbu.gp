# lop plot: memory-bandwidth utilization (%). Edit freely; run: cd <this folder> && gnuplot 13b-mbu.gp
set terminal pngcairo size 1340,400 font ',10'
set output '13b-mbu.png'
set palette defined (0 '#ffffcc', 25 '#fed976', 50 '#fd8d3c', 75 '#e31a1c', 100 '#800026')
set style fill solid 1.0
set multiplot layout 1,3
set title 'Original 13B - NVIDIA H200'
unset logscale x
set xlabel 'batch size'
set ylabel 'output length'
set xtics ('1' 0, '2' 1, '4' 2, '8' 3, '16' 4, '32' 5, '64' 6, '128' 7, '256' 8, '384' 9, '512' 10)
set ytics ('16' 0, '32' 1, '64' 2, '128' 3, '256' 4, '512' 5, '1024' 6)
set xrange [-0.5:10.5]
set yrange [-0.5:6.5]
unset key
set cbrange [0:100]
set cblabel 'memory-bandwidth utilization (%)'
plot '13b-mbu-heat-0.dat' using 1:2:(0.5):(0.5):($3) with boxxyerror fs solid 1.0 noborder lc palette, \
     '' using 1:2:(strcol(7) eq 'ok' ? NaN : 0.5):(0.5) with boxxyerror fs solid 1.0 noborder lc rgb '#bdbdbd', \
     '' using 1:2:4 with labels font ',7'
set title 'Width 9.5B - NVIDIA H200'
unset logscale x
set xlabel 'batch size'
set ylabel 'output length'
set xtics ('1' 0, '2' 1, '4' 2, '8' 3, '16' 4, '32' 5, '64' 6, '128' 7, '256' 8, '384' 9, '512' 10)
set ytics ('16' 0, '32' 1, '64' 2, '128' 3, '256' 4, '512' 5, '1024' 6)
set xrange [-0.5:10.5]
set yrange [-0.5:6.5]
unset key
set cbrange [0:100]
set cblabel 'memory-bandwidth utilization (%)'
plot '13b-mbu-heat-1.dat' using 1:2:(0.5):(0.5):($3) with boxxyerror fs solid 1.0 noborder lc palette, \
     '' using 1:2:(strcol(7) eq 'ok' ? NaN : 0.5):(0.5) with boxxyerror fs solid 1.0 noborder lc rgb '#bdbdbd', \
     '' using 1:2:4 with labels font ',7'
set title 'Depth 9.5B - NVIDIA H200'
unset logscale x
set xlabel 'batch size'
set ylabel 'output length'
set xtics ('1' 0, '2' 1, '4' 2, '8' 3, '16' 4, '32' 5, '64' 6, '128' 7, '256' 8, '384' 9, '512' 10)
set ytics ('16' 0, '32' 1, '64' 2, '128' 3, '256' 4, '512' 5, '1024' 6)
set xrange [-0.5:10.5]
set yrange [-0.5:6.5]
unset key
set cbrange [0:100]
set cblabel 'memory-bandwidth utilization (%)'
plot '13b-mbu-heat-2.dat' using 1:2:(0.5):(0.5):($3) with boxxyerror fs solid 1.0 noborder lc palette, \
     '' using 1:2:(strcol(7) eq 'ok' ? NaN : 0.5):(0.5) with boxxyerror fs solid 1.0 noborder lc rgb '#bdbdbd', \
     '' using 1:2:4 with labels font ',7'
unset multiplot
